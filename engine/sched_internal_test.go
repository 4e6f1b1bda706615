package engine

import (
	"math/rand/v2"
	"slices"
	"testing"
	"unicode/utf8"
)

func TestReadyQueueOrder(t *testing.T) {
	t.Parallel()
	var q readyQueue
	var want []int
	for range 500 {
		v := rand.IntN(1000)
		q.push(v)
		want = append(want, v)
		if rand.IntN(3) == 0 {
			slices.Sort(want)
			if got := q.pop(); got != want[0] {
				t.Fatalf("pop = %d, want %d", got, want[0])
			}
			want = want[1:]
		}
	}
	slices.Sort(want)
	for _, w := range want {
		if got := q.pop(); got != w {
			t.Fatalf("pop = %d, want %d", got, w)
		}
	}
	if len(q) != 0 {
		t.Fatalf("%d left", len(q))
	}
}

func TestCutUTF8(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aéé", 2, "a"},     // é is 2 bytes: never split
		{"aéé", 3, "aé"},    //
		{"日本", 2, "日本"[:2]}, // a rune longer than n is cut anyway
		{"a日本", 3, "a"},
	} {
		got := cutUTF8(tc.s, tc.n)
		if got != tc.want {
			t.Errorf("cutUTF8(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
		if got != tc.s[:min(len(tc.s), tc.n)] && !utf8.ValidString(got) {
			t.Errorf("cutUTF8(%q, %d) = %q: invalid UTF-8", tc.s, tc.n, got)
		}
	}
}
