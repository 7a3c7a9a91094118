package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/abusemilter/abusemilter/internal/testutil/redistest"
	"github.com/abusemilter/abusemilter/ratelimit"
)

// TestClusterConfig runs the commands on a three-master Cluster named by
// the config (addrs + cluster: true): the subjects' keys spread over every
// master, and locked, top and exempt list must find them all.
func TestClusterConfig(t *testing.T) {
	nodes := redistest.StartCluster(t, 3)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, `"`+n.Addr()+`"`)
	}
	cfg := strings.Replace(testConfig, "  url: redis://%s\n", "  addrs: ["+strings.Join(addrs, ", ")+"]\n  cluster: true\n", 1)
	path := writeConfig(t, "%s", cfg)
	e := connectEnv(t, globalOptions{ConfigPath: path, Timeout: 5 * time.Second})
	ctx := context.Background()
	lim := e.admin.(ratelimit.Limiter)
	accounts := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot"}
	for i, a := range accounts {
		for range i%3 + 1 {
			if d, err := lim.CheckAndCharge(ctx, ratelimit.Request{Account: a, Sender: a + "@example.com", Authenticated: true, Recipients: []string{"r@dest.example"}}); err != nil || !d.Allowed {
				t.Fatalf("charge %s: %+v %v", a, d, err)
			}
		}
	}
	var out bytes.Buffer
	for _, a := range accounts[:4] {
		if err := runLock(ctx, lockOptions{Env: e, Account: a, Reason: "cluster test"}, &out); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range accounts[4:] {
		if err := runExempt(ctx, exemptOptions{Env: e, Action: "add", Subject: a, Reason: "cluster test"}, &out); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	if err := runLocked(ctx, lockedOptions{Env: e, JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	var lv lockedJSON
	if err := json.Unmarshal(out.Bytes(), &lv); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lv.Locked {
		got = append(got, l.Account)
	}
	if strings.Join(got, ",") != "alpha,bravo,charlie,delta" {
		t.Errorf("locked on the cluster = %v", got)
	}
	out.Reset()
	if err := runExempt(ctx, exemptOptions{Env: e, Action: "list", JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	var el exemptListJSON
	if err := json.Unmarshal(out.Bytes(), &el); err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, x := range el.Exemptions {
		got = append(got, x.Subject)
	}
	if strings.Join(got, ",") != "acct:echo,acct:foxtrot,acct:relay" {
		t.Errorf("exemptions on the cluster = %v", got)
	}
	// alpha..foxtrot sent 1, 2, 3, 1, 2, 3 messages.
	top := topOf(t, e, "messages", 4)
	var ranked []string
	for _, en := range top.Entries {
		ranked = append(ranked, fmt.Sprintf("%s=%d", en.Subject, en.Count))
	}
	if want := "acct:charlie=3,acct:foxtrot=3,acct:bravo=2,acct:echo=2"; strings.Join(ranked, ",") != want {
		t.Errorf("top on the cluster = %v, want %s", ranked, want)
	}
	if v := statusOf(t, e, "delta"); !v.Locked || v.Lock.Reason != "cluster test" || limitOf(t, v, ratelimit.AccountMessages).Used != 1 {
		t.Errorf("status of delta on the cluster: %+v", v)
	}
}
