// Package servicestest lets a package's tests prove they do not depend on
// the machine's /etc/services: RunWithEmpty re-runs named tests of the
// running test binary in a private mount namespace where an empty file is
// bind-mounted over /etc/services, as in an image without netbase.
package servicestest
