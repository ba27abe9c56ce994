package render_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/swanmgr/swanmgr/render"
)

// BenchmarkRenderPrior renders 5,000 rules with a Prior of the same
// policy (every connection taken) and without one:
//
//	go test -run '^$' -bench RenderPrior ./render/
func BenchmarkRenderPrior(b *testing.B) {
	p := filepath.Join(b.TempDir(), "p.toml")
	if err := os.WriteFile(p, []byte(genPolicy(5000, nil)), 0o600); err != nil {
		b.Fatal(err)
	}
	a, err := assigned(b, p)
	if err != nil {
		b.Fatal(err)
	}
	res, err := render.Render(a, render.Options{Prior: render.NewPrior("bench", nil)})
	if err != nil {
		b.Fatal(err)
	}
	data := res.PriorBytes("bench")
	b.Run("without", func(b *testing.B) {
		for b.Loop() {
			if _, err := render.Render(a, render.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("with", func(b *testing.B) {
		for b.Loop() {
			if _, err := render.Render(a, render.Options{Prior: render.NewPrior("bench", data)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read", func(b *testing.B) {
		for b.Loop() {
			render.NewPrior("bench", data)
		}
	})
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			res.PriorBytes("bench")
		}
	})
}
