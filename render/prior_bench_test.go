package render_test

import (
	"testing"

	"github.com/swanmgr/swanmgr/render"
)

// BenchmarkRenderPrior renders 5,000 rules with a Prior of the same
// policy (every connection taken) and without one:
//
//	go test -run '^$' -bench RenderPrior ./render/
func BenchmarkRenderPrior(b *testing.B) {
	a := genAssigned(b, 5000, nil)
	res, data := keptForm(b, a, "bench")
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
