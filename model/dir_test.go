package model_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/swanmgr/swanmgr/model"
)

// folder writes files into a new folder beside k.psk and returns it.
func folder(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "k.psk"), []byte(labKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "policy.d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func loadFolder(t *testing.T, dir string) (*model.Assigned, []model.Problem, error) {
	t.Helper()
	data, err := model.ReadFile(dir)
	if err != nil {
		return nil, nil, err
	}
	return model.ParseValidate(dir, data, model.ValidateOptions{})
}

const (
	dirEndpoint = "assign = \"P\"\n[endpoint]\nname = \"A\"\naddresses = [\"10.0.0.1\"]\n" +
		"[[filter_action]]\nname = \"FA\"\naction = \"negotiate\"\n"
	dirPeer2 = "[[filter_list]]\nname = \"FL2\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.0.0.2\"\n" +
		"[[policy]]\nname = \"P\"\n  [[policy.rule]]\n  name = \"R2\"\n  filter_list = \"FL2\"\n  filter_action = \"FA\"\n" +
		"  authentication = [ { method = \"psk\", secret_file = \"../k.psk\" } ]\n"
	dirPeer3 = "[[filter_list]]\nname = \"FL3\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.0.0.3\"\n" +
		"[[policy]]\nname = \"P\"\n  [[policy.rule]]\n  name = \"R3\"\n  filter_list = \"FL3\"\n  filter_action = \"FA\"\n" +
		"  authentication = [ { method = \"psk\", secret_file = \"../k.psk\" } ]\n"
)

// A folder's files make one policy: one policy of the same name across
// files, rules in file-name order, relative paths against the folder;
// files that are not *.toml, or hidden, are not read.
func TestFolderMergesFiles(t *testing.T) {
	dir := folder(t, map[string]string{
		"00-base.toml":       dirEndpoint,
		"30-peer3.toml":      dirPeer3,
		"20-peer2.toml":      dirPeer2,
		".20-peer2.toml.swp": "not toml at all [[[",
		"README":             "not toml either [[[",
	})
	a, warns, err := loadFolder(t, dir)
	if err != nil || len(warns) > 0 {
		t.Fatalf("ParseValidate: %v %v", err, warns)
	}
	var names []string
	for _, r := range a.Rules {
		names = append(names, r.Name)
	}
	if want := []string{"R2", "R3"}; !reflect.DeepEqual(names, want) {
		t.Errorf("rules %v, want %v (file order)", names, want)
	}
	if !a.File.IsFolder() || a.File.Dir() != dir {
		t.Errorf("IsFolder %v, Dir %q, want the folder %q", a.File.IsFolder(), a.File.Dir(), dir)
	}
	wantFiles := []string{filepath.Join(dir, "00-base.toml"), filepath.Join(dir, "20-peer2.toml"), filepath.Join(dir, "30-peer3.toml")}
	if got := a.File.Files(); !reflect.DeepEqual(got, wantFiles) {
		t.Errorf("Files %v, want %v", got, wantFiles)
	}
	// Each rule's line is its file's.
	for _, c := range []struct {
		rule int
		file string
		line int
	}{{0, wantFiles[1], 8}, {1, wantFiles[2], 8}} {
		f, l := a.File.Locate(a.Rules[c.rule].Line)
		if f != c.file || l != c.line {
			t.Errorf("rule %s at %s:%d, want %s:%d", a.Rules[c.rule].Name, f, l, c.file, c.line)
		}
		ff, fl := a.File.Locate(a.Rules[c.rule].Filters[0].Line)
		if ff != c.file || fl != 3 {
			t.Errorf("rule %s's filter at %s:%d, want %s:3", a.Rules[c.rule].Name, ff, fl, c.file)
		}
	}
	if len(a.Inputs) != 1 || a.Inputs[0].Name != filepath.Join(filepath.Dir(dir), "k.psk") {
		t.Errorf("inputs %+v, want the one key file beside the folder", a.Inputs)
	}
}

// What does not merge, and what validation finds, names each file and
// line; nothing of it is left to chance of order.
func TestFolderProblemsNameTheirFile(t *testing.T) {
	dir := folder(t, map[string]string{
		"00-base.toml":  dirEndpoint,
		"20-peer2.toml": dirPeer2,
		"40-bad.toml": "assign = \"Q\"\n[endpoint]\naddresses = [\"10.0.0.9\"]\n" +
			"[[filter_list]]\nname = \"FL2\"\n  [[filter_list.filter]]\n  source = \"me\"\n  destination = \"10.0.0.4\"\n  colour = \"red\"\n" +
			"[[policy]]\nname = \"P\"\ndescription = \"mine\"\n  [[policy.rule]]\n  name = \"R4\"\n  filter_list = \"Nope\"\n  filter_action = \"FA\"\n" +
			"  authentication = [ { method = \"psk\", secret_file = \"../k.psk\" } ]\n",
		"50-more.toml": "[[policy]]\nname = \"P\"\ndescription = \"other\"\n",
	})
	_, _, err := loadFolder(t, dir)
	if !errors.Is(err, model.ErrInvalid) {
		t.Fatalf("err %v, want invalid", err)
	}
	got := strings.Split(err.Error(), "\n")
	bad, more, base, peer2 := filepath.Join(dir, "40-bad.toml"), filepath.Join(dir, "50-more.toml"), filepath.Join(dir, "00-base.toml"), filepath.Join(dir, "20-peer2.toml")
	want := []string{
		bad + `:1: assign = "Q", but ` + base + `:1 assigns "P": one file of the folder names the assigned policy`,
		bad + `:2: [endpoint] is also written in ` + base + `:2: one file of the folder describes this computer`,
		bad + `:5: filter_list "FL2": duplicate name (first at ` + peer2 + `:2)`,
		bad + `:9: unknown key filter_list.filter.colour`,
		bad + `:15: policy "P" rule "R4": filter_list "Nope" not found`,
		more + `:3: policy "P": description differs from the one in ` + bad + `:12: write a policy's own keys in one of its files`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if strings.Contains(err.Error(), labKey) {
		t.Errorf("a message shows the key: %v", err)
	}
}

// A folder is read in name order, as a bundle that parses the same from a
// copy (what --confirm keeps); the limits hold for each file and for all.
func TestReadFolder(t *testing.T) {
	empty := folder(t, map[string]string{"notes.txt": "x"})
	if _, err := model.ReadFile(empty); err == nil || !strings.Contains(err.Error(), empty+": the policy folder has no *.toml file") {
		t.Errorf("empty folder: %v", err)
	}
	nul := folder(t, map[string]string{"00-base.toml": dirEndpoint, "10-x.toml": "a = 1\n\x00\n"})
	if _, err := model.ReadFile(nul); err == nil || !strings.Contains(err.Error(), filepath.Join(nul, "10-x.toml")+":2: the file holds a NUL byte") {
		t.Errorf("NUL: %v", err)
	}
	dir := folder(t, map[string]string{"00-base.toml": dirEndpoint, "20-peer2.toml": dirPeer2})
	data, err := model.ReadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The bundle as a file of its own is not a policy file.
	fake := filepath.Join(t.TempDir(), "fake.toml")
	if err := os.WriteFile(fake, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := model.ReadFile(fake); err == nil || !strings.Contains(err.Error(), "NUL byte") {
		t.Errorf("a file holding a bundle: %v", err)
	}
	// A damaged copy is an error, not a panic or another policy.
	for _, cut := range []int{len(data) - 1, len(data) / 2, 25} {
		if _, _, err := model.ParseValidate(dir, data[:cut], model.ValidateOptions{}); err == nil {
			t.Errorf("bundle cut at %d of %d parsed", cut, len(data))
		}
	}
	// The same bytes parse the same wherever they were read.
	a1, _, err1 := model.ParseValidate(dir, data, model.ValidateOptions{})
	a2, _, err2 := loadFolder(t, dir)
	if err1 != nil || err2 != nil || len(a1.Rules) != 1 || a1.Rules[0].Name != a2.Rules[0].Name {
		t.Errorf("bundle: %v %v", err1, err2)
	}
}

// Two [[policy]] of one name in one file are the duplicate they are in a
// file alone, also in a folder; a rule name taken in another file says
// where.
func TestFolderDuplicatesInOneFile(t *testing.T) {
	dir := folder(t, map[string]string{
		"00-base.toml":  dirEndpoint,
		"20-peer2.toml": dirPeer2 + "[[policy]]\nname = \"P\"\n",
		"30-peer3.toml": strings.Replace(dirPeer3, `name = "R3"`, `name = "R2"`, 1),
	})
	_, _, err := loadFolder(t, dir)
	peer2, peer3 := filepath.Join(dir, "20-peer2.toml"), filepath.Join(dir, "30-peer3.toml")
	want := []string{
		peer2 + `:13: policy "P": has no rules: an assigned policy needs at least one [[policy.rule]] linking a filter list to a filter action`,
		peer2 + `:14: policy "P": duplicate name (also policy 1)`,
		peer3 + `:8: policy "P" rule "R2": duplicate rule name (also rule 1, at ` + peer2 + `:8); give each rule a distinct name`,
	}
	if err == nil || !reflect.DeepEqual(strings.Split(err.Error(), "\n"), want) {
		t.Errorf("problems:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

// A folder's files are read as a file alone is: a FIFO among them is
// refused, not waited on; a file over the size limit is refused by name;
// a symbolic link to a file is read, one to a folder is not; and what is
// read is each file's bytes as they are (thousands of them, as one per
// peer, in name order).
func TestReadFolderMembers(t *testing.T) {
	files := map[string]string{"00-base.toml": dirEndpoint}
	for i := 0; i < 300; i++ {
		files[fmt.Sprintf("p-%03d.toml", i)] = fmt.Sprintf("# peer %d\n%s", i, strings.Repeat("#\n", i))
	}
	dir := folder(t, files)
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "linked.toml"), []byte("# linked\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other, "linked.toml"), filepath.Join(dir, "q-linked.toml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, filepath.Join(dir, "r-folder.toml")); err != nil {
		t.Fatal(err)
	}
	data, err := model.ReadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := model.PolicyFiles(dir, data)
	files["q-linked.toml"] = "# linked\n"
	if len(got) != len(files) {
		t.Fatalf("%d files read, want %d", len(got), len(files))
	}
	for name, text := range files {
		if b, ok := got[filepath.Join(dir, name)]; !ok || string(b) != text {
			t.Fatalf("%s read as %q (%v), want %q", name, b, ok, text)
		}
	}

	fifo := filepath.Join(dir, "s-fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := model.ReadFile(dir); err == nil || !strings.Contains(err.Error(), fifo+" is not a regular file") {
		t.Errorf("a FIFO in the folder: %v", err)
	}
	os.Remove(fifo)

	big := filepath.Join(dir, "t-big.toml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#\n"), model.MaxFileSize/2+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := model.ReadFile(dir); err == nil || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a file over the limit in the folder: %v", err)
	}
}
