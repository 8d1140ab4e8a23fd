// Package sysmon keeps the Go runtime's monitor thread (sysmon) from
// preempting the threads that serve traffic.
//
// sysmon sleeps while every P is idle and is woken by the next system call
// the scheduler is told of (Go's net accepts, sets TCP_NODELAY and closes
// that way); it then polls every 20 us for a millisecond or more. As an
// ordinary thread each of those wake-ups preempts what runs on its core,
// and on a proxy core that goes idle between bursts of new connections
// that was a wake-up for one request in three: new connections waited
// 0.24 ms at the median instead of 0.19, and 3.5-3.7 ms at p99 under load
// instead of 2.65-2.8. SCHED_BATCH keeps sysmon's fair share of the CPU but
// not the right to preempt on wake-up: it runs when the core is free or
// at the next scheduler tick, a few milliseconds at most, which its duties
// (taking a P back from a blocked system call, preempting a goroutine that
// ran 10 ms, the forced GC every two minutes) allow.
package sysmon

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Thread returns the thread id of the runtime's monitor. runtime.main
// starts it before any other thread, so its id is the first the kernel
// allocated after the main thread's (the process id).
func Thread() (int, error) {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("runtime monitor thread: %w", err)
	}
	pid := os.Getpid()
	var tids []int
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil && tid != pid {
			tids = append(tids, tid)
		}
	}
	tid, ok := firstAfter(pid, tids)
	if !ok {
		return 0, errors.New("runtime monitor thread: the process has no thread besides the main one")
	}
	return tid, nil
}

// firstAfter is the id among tids the kernel allocated first after pid:
// ids are handed out in increasing order and wrap at pid_max, so it is
// the smallest id above pid or, when the ids wrapped after pid, the
// smallest of all.
func firstAfter(pid int, tids []int) (int, bool) {
	above, least := 0, 0
	for _, tid := range tids {
		if tid > pid && (above == 0 || tid < above) {
			above = tid
		}
		if least == 0 || tid < least {
			least = tid
		}
	}
	if above != 0 {
		return above, true
	}
	return least, least != 0
}

// SetBatch makes the runtime's monitor thread SCHED_BATCH, keeping its
// nice value, and returns its thread id. A monitor that does not run
// SCHED_OTHER (an operator put the whole process under a real-time or
// idle policy) is left as it is, with an error saying so.
func SetBatch() (int, error) {
	tid, err := Thread()
	if err != nil {
		return 0, err
	}
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return tid, fmt.Errorf("runtime monitor thread %d: sched_getattr: %w", tid, err)
	}
	switch attr.Policy {
	case unix.SCHED_BATCH:
		return tid, nil
	case unix.SCHED_NORMAL:
	default:
		return tid, fmt.Errorf("runtime monitor thread %d: scheduling policy %d left as set", tid, attr.Policy)
	}
	attr.Policy = unix.SCHED_BATCH
	attr.Flags = 0
	if err := unix.SchedSetAttr(tid, attr, 0); err != nil {
		return tid, fmt.Errorf("runtime monitor thread %d: sched_setattr SCHED_BATCH: %w", tid, err)
	}
	return tid, nil
}
