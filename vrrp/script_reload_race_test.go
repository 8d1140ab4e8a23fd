package vrrp

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A script's goroutine logs through in.log (every failing run at debug,
// transitions at warn/info) while a reload's reconfigure replaces in.log on
// the instance goroutine: run with -race.
func TestScriptLogVsReconfigureRace(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "fail.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(200)
	cfg.Scripts = []ScriptConfig{{Name: "chk", Path: script, Interval: 2 * time.Millisecond, Timeout: time.Second, Weight: -10, Fall: 1, Rise: 1}}
	n := &fakeNet{}
	node := startTestNode(t, n, "192.0.2.1", cfg)
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		c := cfg
		c.Priority = uint8(150 + i%50)
		if err := node.m.Apply([]Config{c}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}
