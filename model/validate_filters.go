package model

import (
	"runtime"
	"strconv"
)

// checkedList is what the filters of one filter list resolve to: each
// filter (its index set), whether all of them are valid, and their
// problems in the order validating them one by one reports them. path and
// where are the list's key path and how its messages name it.
type checkedList struct {
	path, where string
	filters     []ResolvedFilter
	ok          bool
	errs        Problems
}

// parallelFilters is the number of filters from which checkFilters
// checks them on every CPU: a filter is a few microseconds of work (its
// addresses parsed, its line looked up), and at thousands of rules the
// filter lists were half of validation's time, on one CPU.
var parallelFilters = 512

// checkFilters resolves the filters of every filter list of v's file, in
// list order. Checking a filter reads the file and the endpoint only and
// writes nothing but its problems, so the lists are checked on every CPU,
// each worker with a validator of its own; filterLists then reports them
// in list order, as if each had been checked in turn (those of a list it
// refuses for its name are not reported, as before).
func (v *validator) checkFilters(ep Endpoint) []checkedList {
	lists := v.f.FilterLists
	out := make([]checkedList, len(lists))
	check := func(sv *validator, i int) {
		fl := &lists[i]
		c := &out[i]
		c.path = "filter_list[" + strconv.Itoa(i) + "]"
		c.where = "filter_list " + strconv.Quote(fl.Name)
		c.ok = true
		n := len(sv.errs)
		if len(fl.Filters) > 0 {
			c.filters = make([]ResolvedFilter, 0, len(fl.Filters))
		}
		for j, flt := range fl.Filters {
			rf, ok := sv.filter(c.path+".filter["+strconv.Itoa(j)+"]", c.where+" filter "+strconv.Itoa(j+1), flt, ep)
			rf.Index = j
			c.ok = c.ok && ok
			c.filters = append(c.filters, rf)
		}
		if len(sv.errs) > n {
			c.errs = sv.errs[n:len(sv.errs):len(sv.errs)]
		}
	}
	total := 0
	for i := range lists {
		total += len(lists[i].Filters)
	}
	workers := runtime.GOMAXPROCS(0)
	if total < parallelFilters {
		workers = 1
	}
	// A worker's problems stay in the order it checked them, each list's
	// a slice of them.
	eachOn(workers, len(lists), func() func(int) {
		sv := &validator{f: v.f, o: v.o}
		return func(i int) { check(sv, i) }
	})
	return out
}
