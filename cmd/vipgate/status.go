package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vipgate/vipgate/admin"
	"github.com/vipgate/vipgate/config"
)

// status prints the running instance's state from its admin API.
func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vipgate status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", config.DefaultPath, "configuration `file`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	r, err := reachOf(*path)
	if err != nil {
		printProblems(stderr, *path, err)
		return 1
	}
	addr := r.adminListen
	if addr == "" {
		fmt.Fprintf(stderr, "vipgate: the admin API is off (global.admin_listen = \"\" in %s): no status to show\n", *path)
		return 1
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://" + addr + "/status")
	if err != nil {
		fmt.Fprintf(stderr, "vipgate: no running instance answers on %s (global.admin_listen): %v\n", addr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		fmt.Fprintf(stderr, "vipgate: %s/status answered %s: %s\n", addr, resp.Status, strings.TrimSpace(string(msg)))
		return 1
	}
	var st admin.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		fmt.Fprintf(stderr, "vipgate: %s/status: %v\n", addr, err)
		return 1
	}
	printStatus(stdout, &st)
	return 0
}

func printStatus(w io.Writer, st *admin.Status) {
	fmt.Fprintf(w, "node %s  pid %d  version %s  config %s (generation %d, reloads ok %d failed %d)\n",
		st.Node, st.PID, st.Version, st.ConfigFile, st.Generation, st.Reloads.OK, st.Reloads.Failed)
	if len(st.Unhealthy) > 0 {
		fmt.Fprintf(w, "UNHEALTHY: %s\n", strings.Join(st.Unhealthy, "; "))
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	if len(st.VRRP) > 0 {
		fmt.Fprintln(tw, "\nVRRP\tINTERFACE\tVRID\tSTATE\tPRIORITY\tVIPS HELD\tMASTER\tLAST TRANSITION")
		for _, v := range st.VRRP {
			prio := fmt.Sprint(v.Priority)
			if v.EffectivePriority != v.Priority {
				prio = fmt.Sprintf("%d (eff. %d)", v.Priority, v.EffectivePriority)
			}
			held := strings.Join(v.VIPsHeld, ",")
			if held == "" {
				held = "-"
			}
			last := "-"
			if !v.LastTransition.At.IsZero() {
				last = fmt.Sprintf("%s %s->%s (%s)", v.LastTransition.At.Format(time.RFC3339), v.LastTransition.From, v.LastTransition.To, v.LastTransition.Reason)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d/%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Interface, v.VirtualRouterID, v.Family, v.State, prio, held, v.Master, last)
		}
	}
	if len(st.Listeners) > 0 {
		fmt.Fprintln(tw, "\nLISTENER\tSERVING\tACCEPTED\tERRORS")
		for _, l := range st.Listeners {
			fmt.Fprintf(tw, "%s\t%v\t%d\t%d %s\n", l.Address, l.Serving, l.Accepted, l.AcceptErrors, l.LastError)
		}
	}
	if len(st.Upstreams) > 0 {
		fmt.Fprintln(tw, "\nUPSTREAM\tSERVER\tSTATE\tWEIGHT\tACTIVE\tREQUESTS\tFAILURES\tREASON")
		for _, u := range st.Upstreams {
			for _, s := range u.Servers {
				name := u.Name
				if s.Backup {
					name += " (backup)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", name, s.Address, s.State, s.Weight, s.Active, s.Requests, s.Failures, s.Reason)
			}
		}
	}
	_ = tw.Flush()
}
