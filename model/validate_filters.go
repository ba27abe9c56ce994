package model

import (
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
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
// writes nothing but its problems, so the lists are checked in chunks on
// every CPU, each with a validator of its own whose problems are the
// chunk's; filterLists then reports them in list order, as if each had
// been checked in turn (those of a list it refuses for its name are not
// reported, as before).
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
	workers := min(runtime.GOMAXPROCS(0), len(lists))
	if total < parallelFilters || workers < 2 {
		sv := &validator{f: v.f, o: v.o}
		for i := range lists {
			check(sv, i)
		}
		return out
	}
	// Chunks of lists taken in turn: a worker's problems stay in the
	// order it checked them, each list's a slice of them.
	const chunk = 64
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sv := &validator{f: v.f, o: v.o}
			for {
				from := int(next.Add(chunk)) - chunk
				if from >= len(lists) {
					return
				}
				for i := from; i < min(from+chunk, len(lists)); i++ {
					check(sv, i)
				}
			}
		}()
	}
	wg.Wait()
	return out
}
