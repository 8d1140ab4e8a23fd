// Package failoverbench measures, for make bench, what a client sees when
// the master of an HA pair fails: a keepalived + nginx pair against a
// vipgate pair, in one network-namespace lab (internal/netlab), with a
// client probing the VIP every 20 ms. Its only content is
// BenchmarkFailover (run it with -benchtime 1x); it skips when not root.
package failoverbench
