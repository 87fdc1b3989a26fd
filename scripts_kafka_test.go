package ferry_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// scripts/kafka closes the descriptors it inherited before it starts the
// broker: a broker started by a command holding a lock (flock) must not
// keep that lock until it stops.
func TestScriptsKafkaBrokerHoldsNoInheritedLock(t *testing.T) {
	k := needKafkaTools(t)
	path := filepath.Join(t.TempDir(), "lock")
	lock, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	b := startPrivateBroker(t, k, lock)
	lock.Close() // the lock lives on only in processes that inherited it

	raw, err := os.ReadFile(filepath.Join(b.dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/" + strings.TrimSpace(string(raw)) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, _ := os.Readlink("/proc/" + strings.TrimSpace(string(raw)) + "/fd/" + fd.Name()); target == path {
			t.Errorf("the broker holds the lock file its starter held, as descriptor %s", fd.Name())
		}
	}
	again, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := syscall.Flock(int(again.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
		t.Error("the lock is still held after its holder closed it: the broker inherited it")
	} else if err != nil {
		t.Fatal(err)
	}
}
