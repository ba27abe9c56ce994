package importer_test

import (
	"flag"
	"os"
	"testing"
)

// TestMain bounds the fuzzer's minimization of a new input to one second
// unless -fuzzminimizetime is given, as model's does: minimizing a script
// of a few KB by Go's default 60 s is what makes a run sit at 0 execs/sec.
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
