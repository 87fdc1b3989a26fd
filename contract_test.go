package ferry_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every behaviour id a test or the README names is defined in docs/CONTRACT.md,
// so a reader can look up what a test guards.
func TestContractDefinesEveryCitedID(t *testing.T) {
	contract, err := os.ReadFile("docs/CONTRACT.md")
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^- \*\*([A-Z][0-9]+)\*\*`).FindAllSubmatch(contract, -1) {
		defined[string(m[1])] = true
	}
	files, _ := filepath.Glob("*_test.go")
	files = append(files, "README.md", "DESIGN.md")
	id := regexp.MustCompile(`\b[BAMSEOKDXT][0-9]{1,2}\b`)
	var missing []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, ref := range id.FindAllString(line, -1) {
				if !defined[ref] {
					missing = append(missing, f+": "+ref)
				}
			}
		}
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	if len(missing) > 0 {
		t.Errorf("ids cited but not defined in docs/CONTRACT.md:\n%s", strings.Join(missing, "\n"))
	}
}
