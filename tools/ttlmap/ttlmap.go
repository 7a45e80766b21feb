// Package ttlmap is a minimal stand-in, written for this project, for the
// module of the same path that plakar v1.1.4 imports but that the Go module
// proxy reachable here does not serve. plakar only uses it for its web UI's
// signed download links, which our tests never touch; it offers the four
// calls plakar makes: New, AutoExpire, Add and Get.
package ttlmap

import (
	"sync"
	"time"
)

type entry[V any] struct {
	value   V
	expires time.Time
}

// Map is a mutex-guarded map whose entries vanish after a fixed lifetime.
type Map[K comparable, V any] struct {
	mu      sync.Mutex
	ttl     time.Duration
	entries map[K]entry[V]
}

func New[K comparable, V any](ttl time.Duration) *Map[K, V] {
	return &Map[K, V]{ttl: ttl, entries: make(map[K]entry[V])}
}

func (m *Map[K, V]) Add(key K, value V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[key] = entry[V]{value: value, expires: time.Now().Add(m.ttl)}
}

func (m *Map[K, V]) Get(key K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.entries[key]
	if !ok || time.Now().After(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

// AutoExpire starts a goroutine that drops expired entries once a minute.
func (m *Map[K, V]) AutoExpire() {
	go func() {
		for range time.Tick(time.Minute) {
			now := time.Now()
			m.mu.Lock()
			for k, e := range m.entries {
				if now.After(e.expires) {
					delete(m.entries, k)
				}
			}
			m.mu.Unlock()
		}
	}()
}
