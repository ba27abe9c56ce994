package slug

import "strings"

// Max is the longest slug: names stay readable in swanctl and nft output.
const Max = 40

// Make lowers s and turns every run of characters other than a-z and 0-9
// into one dash, without dashes at either end, cut to at most Max bytes
// (and again without a trailing dash). Every byte of a multi-byte UTF-8
// character is outside a-z0-9, so a run of them is one dash, as a run of
// such characters is.
func Make(s string) string {
	s = strings.ToLower(s)
	b := make([]byte, 0, min(len(s), Max+1))
	dash := false
	for i := 0; i < len(s) && len(b) <= Max; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			if dash && len(b) > 0 {
				b = append(b, '-')
			}
			dash = false
			b = append(b, c)
			continue
		}
		dash = true
	}
	if len(b) > Max {
		b = b[:Max]
	}
	return strings.TrimRight(string(b), "-")
}
