// Command vrrpnode runs a vrrp.Manager from a JSON []vrrp.Config file, for
// the network-namespace tests of package vrrp until the vipgate binary
// takes its place. SIGTERM resigns, releases and stops (the daemon's stop
// sequence); SIGUSR2 hands over (resign, release, rejoin as BACKUP);
// SIGHUP reloads the file; SIGUSR1 prints "INTERFACES <json of
// Interfaces()>" then "STATUS <json of Status()>";
// every transition is printed to stdout as
// "TRANSITION <name> <from> <to> <unix-nanos>".
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vipgate/vipgate/vrrp"
	"go.uber.org/zap"
)

func load(path string) ([]vrrp.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cfgs []vrrp.Config
	return cfgs, json.Unmarshal(b, &cfgs)
}

func main() {
	path := flag.String("c", "", "JSON file holding []vrrp.Config")
	debug := flag.Bool("debug", false, "debug logs")
	flag.Parse()
	zc := zap.NewDevelopmentConfig()
	if !*debug {
		zc.Level = zap.NewAtomicLevelAt(zap.InfoLevel)
	}
	log, err := zc.Build()
	if err != nil {
		panic(err)
	}
	cfgs, err := load(*path)
	if err != nil {
		log.Fatal("config", zap.Error(err))
	}
	m := vrrp.NewManager(log)
	m.OnTransition(func(t vrrp.Transition) {
		fmt.Printf("TRANSITION %s %s %s %d\n", t.Instance, t.From, t.To, t.At.UnixNano())
	})
	if err := m.Apply(cfgs); err != nil {
		log.Fatal("apply", zap.Error(err))
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	for s := range sig {
		if s == syscall.SIGUSR1 {
			b, _ := json.Marshal(m.Interfaces())
			fmt.Printf("INTERFACES %s\n", b)
			b, _ = json.Marshal(m.Status())
			fmt.Printf("STATUS %s\n", b)
			continue
		}
		if s == syscall.SIGUSR2 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			m.Resign(ctx)
			cancel()
			m.Release()
			m.Rejoin()
			fmt.Println("HANDED OVER")
			continue
		}
		if s == syscall.SIGHUP {
			cfgs, err := load(*path)
			if err == nil {
				err = m.Apply(cfgs)
			}
			log.Info("reload", zap.Error(err))
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m.Resign(ctx)
		cancel()
		m.Release()
		m.Stop()
		fmt.Println("STOPPED")
		return
	}
}
