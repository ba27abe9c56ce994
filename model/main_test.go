package model_test

import (
	"flag"
	"os"
	"testing"
)

// TestMain bounds the fuzzer's minimization of each new input to one
// second, unless -fuzzminimizetime is given. The default (60 s) is what
// made FuzzLoad sit at "0 execs/sec" for most of a run: no single input is
// slow (the corpus's slowest took 0.4 ms), but Go's minimizer tries
// removing every run of bytes of a new interesting input, O(n²) calls,
// which for a policy file of 2 KB never ends before the 60 s deadline, and
// the calls it makes are not counted as execs.
func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.fuzzminimizetime" })
	if !given {
		if err := flag.Set("test.fuzzminimizetime", "1s"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
