// Package vrrp is vipgate's VRRP: the packet codec (v2 with keepalived's
// simple password, v3 for IPv4 and IPv6), the RFC 5798 state machine as
// pure logic (fsm.go), the receive checks with a typed reason for every
// drop, and the runner that owns the sockets (one raw socket per
// interface and address family, shared by its instances and demultiplexed
// by VRID: socket.go), VIPs (netlink, with a finite lifetime the MASTER
// renews), gratuitous ARP / unsolicited NA, tracking (interfaces,
// vrrp_scripts, external health via SetTrack) and notify scripts. The
// Manager is the API the daemon uses: Apply for start and reload,
// SetTrack, Resign/Release/Stop for the stop sequence, Status,
// Interfaces and OnTransition for the admin API and metrics.
//
// Counters: an advert for a local VRID is counted (received, or dropped
// with its reason) in that instance's InstanceStatus; one that no local
// instance is for (DropWrongVRID, or too short to carry a VRID) is counted
// once, in the InterfaceStatus of the socket that received it, so summing
// either over instances or interfaces never counts an advert twice.
//
// Deviations from RFC 5798, on purpose: a BACKUP that preempts a master
// advertising a lower priority takes over after Skew_Time instead of the
// whole Master_Down_Interval (so a master whose priority drops through
// tracking is replaced within Skew_Time plus one advert); a MASTER answers
// a lower-priority advert at once so the other master steps down quickly;
// FAULT is keepalived's.
package vrrp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Manager owns every VRRP instance of the process.
type Manager struct {
	log       *zap.Logger
	os        netOS
	now       func() time.Time
	runScript scriptRunner
	mu        sync.Mutex
	instances map[Key]*instance
	order     []Key
	tracks    map[string]extTrack
	onChange  []func(Transition)
	stopped   bool
	transMu   sync.Mutex
	// sockets are the shared raw sockets, one per interface and family
	// (socket.go); sockMu is taken after mu, never before.
	sockMu  sync.Mutex
	sockets map[sockKey]*sharedSocket
	// list is the instances in configuration order, replaced whole under
	// mu, so Status needs no lock (and may be called from OnTransition).
	list atomic.Pointer[[]*instance]
}

type extTrack struct {
	instances []string // nil = all
	fault     bool
	weight    int
}

// NewManager returns a Manager with no instances; Apply starts them.
func NewManager(log *zap.Logger) *Manager {
	return newManager(log, defaultOS())
}

func newManager(log *zap.Logger, os netOS) *Manager {
	if log == nil {
		log = zap.NewNop()
	}
	return &Manager{log: log, os: os, now: time.Now, runScript: runScript,
		instances: map[Key]*instance{}, tracks: map[string]extTrack{}, sockets: map[sockKey]*sharedSocket{}}
}

// OnTransition registers fn to be called on every state change of every
// instance, on the instance's goroutine: fn must return quickly (count,
// log, or hand off to a channel) and may call Status, but no other Manager
// method (they wait for the instance that is calling fn). Register before
// the first Apply.
func (m *Manager) OnTransition(fn func(Transition)) {
	m.transMu.Lock()
	defer m.transMu.Unlock()
	m.onChange = append(m.onChange, fn)
}

func (m *Manager) emit(t Transition) {
	m.transMu.Lock()
	fns := m.onChange
	m.transMu.Unlock()
	for _, fn := range fns {
		fn(t)
	}
}

// Apply starts the instances of cfgs on the first call; later calls are
// reloads: an instance whose Key is unchanged keeps its state and VIPs
// (even if renamed) and takes the new settings in place; a removed one
// steps down (priority 0 if MASTER) and releases its VIPs; a new one
// starts. A validation error changes nothing.
func (m *Manager) Apply(cfgs []Config) error {
	var errs []error
	seen := map[Key]string{}
	names := map[string]bool{}
	for i := range cfgs {
		if err := cfgs[i].validate(); err != nil {
			errs = append(errs, err)
		}
		k := cfgs[i].Key()
		if other, dup := seen[k]; dup {
			errs = append(errs, fmt.Errorf("vrrp %s: same interface, virtual_router_id and family as %s", cfgs[i].Name, other))
		}
		seen[k] = cfgs[i].Name
		if names[cfgs[i].Name] {
			errs = append(errs, fmt.Errorf("vrrp %s: name used twice", cfgs[i].Name))
		}
		names[cfgs[i].Name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return errors.New("vrrp: manager stopped")
	}
	// Hold the sockets the new configuration uses while removed instances
	// leave, so replacing every instance of an interface keeps its socket.
	var held []*sharedSocket
	for _, c := range cfgs {
		if s := m.acquireSocket(c.sockKey()); slices.Contains(held, s) {
			m.releaseSocket(s)
		} else {
			held = append(held, s)
		}
	}
	defer func() {
		for _, s := range held {
			m.releaseSocket(s)
		}
	}()
	var removed []*instance
	for _, k := range m.order {
		if _, keep := seen[k]; !keep {
			removed = append(removed, m.instances[k])
			delete(m.instances, k)
		}
	}
	if len(removed) > 0 {
		m.publishWithout(removed)
	}
	for _, in := range removed {
		in.log.Info("instance removed by reload: stepping down")
		in.call(in.shutdown)
		in.wait()
	}
	// Kept instances drop the VIPs they lose before any instance adds
	// its own, and forget them (a renewal or a transition before their
	// reconfigure must not take them back): a VIP moved from one
	// instance to another would otherwise be added by the one and then
	// deleted by the other.
	for _, c := range cfgs {
		if in, ok := m.instances[c.Key()]; ok {
			in.call(func() { in.keepOnlyVIPs(c.VIPs) })
		}
	}
	m.order = m.order[:0]
	for _, c := range cfgs {
		k := c.Key()
		m.order = append(m.order, k)
		if in, ok := m.instances[k]; ok {
			in.call(func() { in.reconfigure(c) })
			continue
		}
		in := newInstance(m, c)
		m.instances[k] = in
		m.applyTracks(in, c.Name)
		in.start()
	}
	m.publish()
	return nil
}

func (m *Manager) publishWithout(removed []*instance) {
	var list []*instance
	if old := m.list.Load(); old != nil {
		for _, in := range *old {
			if !slices.Contains(removed, in) {
				list = append(list, in)
			}
		}
	}
	m.list.Store(&list)
}

func (m *Manager) publish() {
	list := make([]*instance, 0, len(m.order))
	for _, k := range m.order {
		list = append(list, m.instances[k])
	}
	m.list.Store(&list)
}

// applyTracks sets every external track on a new instance before it starts.
func (m *Manager) applyTracks(in *instance, name string) {
	for src, t := range m.tracks {
		if t.instances == nil || contains(t.instances, name) {
			in.fsm.setTrack(m.now(), "ext:"+src, t.fault, t.weight)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SetTrack records external health from source (a listener, an upstream)
// for the named instances (nil = all): fault puts them in FAULT, otherwise
// weight is added to their priority (negative lowers it). A later call
// with the same source replaces this one; fault=false, weight=0 clears it.
func (m *Manager) SetTrack(source string, instances []string, fault bool, weight int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.tracks[source]
	m.tracks[source] = extTrack{instances: instances, fault: fault, weight: weight}
	for _, k := range m.order {
		in := m.instances[k]
		in.call(func() {
			applies := instances == nil || contains(instances, in.cfg.Name)
			// An instance a reload renamed holds the track under the
			// name it had: it must be cleared too, or its fault stays.
			_, holds := in.fsm.tracks["ext:"+source]
			if !applies && !holds && !(old.instances == nil || contains(old.instances, in.cfg.Name)) {
				return
			}
			f, w := fault, weight
			if !applies {
				f, w = false, 0
			}
			in.exec(in.fsm.setTrack(m.now(), "ext:"+source, f, w))
		})
	}
}

// Resign makes every MASTER advertise priority 0 while keeping its VIPs,
// and returns when each has heard the new master, or after its
// Master_Down_Interval, or when ctx is done. BACKUP and FAULT instances
// stop taking part (they would otherwise take the VIPs back). It reports
// false when a MASTER heard nobody take over within Master_Down_Interval:
// its VIPs are still here, and Rejoin makes it MASTER again.
func (m *Manager) Resign(ctx context.Context) (takenOver bool) {
	m.mu.Lock()
	var waits []chan struct{}
	for _, k := range m.order {
		in := m.instances[k]
		ch := make(chan struct{})
		if in.call(func() {
			in.resigned = append(in.resigned, ch)
			in.exec(in.fsm.resign(m.now()))
		}) {
			waits = append(waits, ch)
		}
	}
	m.mu.Unlock()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
			return true // still resigning: Rejoin takes the VIPs back
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	takenOver = true
	for _, k := range m.order {
		in := m.instances[k]
		in.call(func() {
			if in.fsm.unanswered {
				takenOver = false
			}
		})
	}
	return takenOver
}

// Release removes every instance's VIPs (after Resign).
func (m *Manager) Release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.order {
		in := m.instances[k]
		in.call(func() { in.removeVIPs(in.cfg.VIPs) })
	}
}

// Rejoin ends a handover (SIGUSR2: Resign, Release, Rejoin): resigned
// instances are BACKUP again, waiting Master_Down_Interval, and do not
// preempt the new master (whatever their preempt setting) until they have
// been MASTER again; a MASTER whose Resign heard no successor takes its
// VIPs back.
func (m *Manager) Rejoin() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range m.order {
		in := m.instances[k]
		in.call(func() { in.exec(in.fsm.rejoin(m.now())) })
	}
}

// Stop stops every instance: a MASTER that has not resigned sends a
// priority-0 advert, every VIP is removed, BACKUP and FAULT instances send
// nothing; it returns when every goroutine has ended.
func (m *Manager) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	for _, k := range m.order {
		in := m.instances[k]
		in.call(in.shutdown)
	}
	for _, k := range m.order {
		m.instances[k].wait()
	}
	m.instances = map[Key]*instance{}
	m.order = nil
	m.publish()
	// The netlink socket of the real netOS: no instance uses it now.
	if c, ok := m.os.(io.Closer); ok {
		if err := c.Close(); err != nil {
			m.log.Warn("vrrp: close netlink socket", zap.Error(err))
		}
	}
}

// Status returns a snapshot of every instance, in configuration order.
func (m *Manager) Status() []InstanceStatus {
	list := m.list.Load()
	if list == nil {
		return []InstanceStatus{}
	}
	out := make([]InstanceStatus, 0, len(*list))
	for _, in := range *list {
		out = append(out, in.snapshot())
	}
	return out
}
