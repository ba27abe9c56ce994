// Package pair works on two ends of the same IPsec relationship: Mirror
// writes the policy file of a peer from one endpoint's file (the
// knowledge base's "Repeat on the computer that belongs to Bob ... The
// necessary changes are obvious"), and Check compares endpoints' files
// offline and predicts what charon would do with them (the article's
// "you can easily reverse the source and destination addresses or
// reverse the ports").
//
// It is pure: it reads validated models (model.Assigned) and their
// renderings (render.Result) and never talks to charon. It never prints a
// preshared key: keys are compared in constant time and only their
// sources (file or variable names) appear in messages.
package pair
