// Package balancer owns upstream pools, the state of every upstream server
// and the selection policies. It is pure logic: no I/O, a clock that tests
// can fake, and safe for concurrent use.
//
// A [Table] holds one state per (upstream name, server address): passive
// failures (nginx max_fails/fail_timeout), the active health-check result,
// active connections and counters. It lives for the whole process, so a
// config reload does not forget that a backend is down. [Table.Build] turns
// one config generation's [UpstreamSpec] into an [Upstream] whose servers
// share that state; [Table.Forget] drops the state of servers that are no
// longer configured.
//
// Each policy ("round_robin", "ip_hash", "hash", "least_conn", "random",
// "random_two") is a small [Selector] in its own file, registered in the
// policies table of selector.go. Every policy follows the nginx module of
// the same name, including its quirks, so that a migrated config behaves as
// it did:
//
//   - backup servers are used only when no primary server can be picked
//     (nginx allows backup only with round robin and least_conn; here it
//     works with every policy, the policy running over the backup servers);
//   - a server is skipped while configured down, marked unhealthy by an
//     active check, full (max_conns), or failed: max_fails failures, the last
//     one less than fail_timeout ago. After fail_timeout one request is let
//     through as a probe; its success clears the failures;
//   - an upstream with a single server and no backup never counts failures;
//   - when nothing can be picked, Pick returns [ErrNoServer] and failed
//     servers stay failed until their fail_timeout ends (as nginx 1.22 does;
//     the old versions' "quick recovery" cleared every failure count).
package balancer
