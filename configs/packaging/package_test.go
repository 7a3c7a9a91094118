// Package packaging_test builds abusemilter's packages with `make package`
// and, as root on a host with dpkg, installs, upgrades and purges the .deb
// on the host itself, checking what a postmaster would find at each step.
package packaging_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/abusemilter/abusemilter/internal/testutil/testenv"
)

const (
	pkgName    = "abusemilter"
	confFile   = "/etc/abusemilter/abusemilter.yaml"
	unitPath   = "/usr/lib/systemd/system/abusemilter.service"
	oldVersion = "v0.0.1-pkgtest"
	newVersion = "v0.0.2-pkgtest"
)

// installedFiles are files the .deb must put on the host.
var installedFiles = []string{
	"/usr/bin/abusemilter",
	"/usr/bin/abusescan",
	"/usr/bin/abusectl",
	unitPath,
	"/usr/lib/sysusers.d/abusemilter.conf",
	"/usr/lib/tmpfiles.d/abusemilter.conf",
	confFile,
	"/etc/logrotate.d/abusemilter",
	"/usr/share/man/man1/abusemilter.1.gz",
	"/usr/share/man/man1/abusescan.1.gz",
	"/usr/share/man/man1/abusectl.1.gz",
	"/usr/share/man/man1/abusectl-status.1.gz",
	"/usr/share/bash-completion/completions/abusectl",
	"/usr/share/zsh/vendor-completions/_abusectl",
	"/usr/share/fish/vendor_completions.d/abusectl.fish",
	"/usr/share/doc/abusemilter/copyright",
	"/usr/share/doc/abusemilter/LICENSE",
	"/usr/share/doc/abusemilter/README.md",
	"/usr/share/doc/abusemilter/CHANGELOG.md",
	"/usr/share/doc/abusemilter/install.md",
	"/usr/share/doc/abusemilter/operations.md",
	"/usr/share/doc/abusemilter/guide.md",
	"/usr/share/doc/abusemilter/examples/postfix/main.cf.snippet",
	"/usr/share/doc/abusemilter/examples/sendmail/abusemilter.mc",
	"/usr/share/doc/abusemilter/examples/abusemilter.yaml",
}

// createdPaths are what the maintainer scripts create; purge removes them.
var createdPaths = []string{"/etc/abusemilter", "/var/log/abusemilter", "/run/abusemilter", "/var/spool/postfix/abusemilter", "/usr/share/doc/abusemilter"}

// TestDebInstallUpgradePurge builds the packages of this machine's
// architecture (both formats; `make package` builds arm64 and amd64 alike,
// but cross-compiling both here would double the test's time), then installs the .deb on this host, checks the files, the
// system user, the conffile, the installed check and unit, upgrades to a
// rebuilt package over an edited conffile (the edit survives), and purges
// (nothing of the package is left). The .rpm's file list is read with rpm
// -qlp. It needs root and dpkg, and a host where abusemilter is not
// installed already; it removes what it installed.
func TestDebInstallUpgradePurge(t *testing.T) {
	testenv.RequireRoot(t, "installs the package into the system with dpkg")
	dpkg := testenv.RequireTool(t, "dpkg")
	testenv.RequireTool(t, "dpkg-deb")
	testenv.RequireTool(t, "make")
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", pkgName).Output(); err == nil && strings.Contains(string(out), "installed") {
		testenv.Unavailable(t, "abusemilter is already installed on this host (%s): the test does not touch it", out)
	}
	if _, err := os.Stat(confFile); err == nil {
		testenv.Unavailable(t, "%s exists on this host: the test does not touch it", confFile)
	}
	userExisted := run(t, "getent", "passwd", "abusemilter") == nil
	if userExisted {
		testenv.Unavailable(t, "a user abusemilter exists on this host already: the test does not touch it")
	}
	// Paths that exist already are not the package's to remove.
	var created []string
	for _, p := range createdPaths {
		if _, err := os.Lstat(p); err != nil {
			created = append(created, p)
		} else {
			t.Logf("%s exists before the install: purge must leave it", p)
		}
	}
	t.Cleanup(func() {
		if err := exec.Command(dpkg, "--purge", pkgName).Run(); err != nil {
			t.Logf("cleanup: dpkg --purge: %v", err)
		}
	})

	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	arch := runtime.GOARCH
	work := t.TempDir()

	rpmArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
	if rpmArch == "" {
		testenv.Unavailable(t, "the packages are built for amd64 and arm64, not %s", arch)
	}
	// Build the old version (.deb and .rpm) and keep its files, then the
	// new one (.deb only).
	makePackage(t, root, oldVersion, arch, "deb rpm")
	oldDeb := filepath.Join(work, "abusemilter_0.0.1+pkgtest-1_"+arch+".deb")
	oldRPM := filepath.Join(work, "abusemilter-0.0.1+pkgtest-1."+rpmArch+".rpm")
	for _, f := range []string{oldDeb, oldRPM} {
		copyFile(t, filepath.Join(root, "dist", filepath.Base(f)), f)
	}
	if out, err := exec.Command("dpkg-deb", "-f", oldDeb, "Architecture").Output(); err != nil || strings.TrimSpace(string(out)) != arch {
		t.Errorf("the .deb says Architecture %q (%v), want %s", out, err, arch)
	}
	makePackage(t, root, newVersion, arch, "deb")
	newDeb := filepath.Join(work, "abusemilter_0.0.2+pkgtest-1_"+arch+".deb")
	copyFile(t, filepath.Join(root, "dist", filepath.Base(newDeb)), newDeb)

	t.Run("rpm file list", func(t *testing.T) {
		rpm := testenv.RequireTool(t, "rpm")
		out := mustOutput(t, rpm, "-qlp", oldRPM)
		files := strings.Fields(out)
		for _, f := range installedFiles {
			f = strings.Replace(f, "/usr/share/zsh/vendor-completions/", "/usr/share/zsh/site-functions/", 1)
			if !slices.Contains(files, f) {
				t.Errorf("the .rpm lacks %s", f)
			}
		}
		conf := mustOutput(t, rpm, "-qcp", oldRPM)
		if !strings.Contains(conf, confFile) {
			t.Errorf("the .rpm does not mark %s as a configuration file: %s", confFile, conf)
		}
		scripts := mustOutput(t, rpm, "-qp", "--scripts", oldRPM)
		if !strings.Contains(scripts, "systemd-sysusers") || strings.Contains(scripts, "systemctl start") {
			t.Errorf("the .rpm's scriptlets:\n%s", scripts)
		}
	})

	// Install.
	mustRun(t, dpkg, "-i", oldDeb)
	for _, f := range installedFiles {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("after install: %v", err)
		}
	}
	for _, bin := range []string{"/usr/bin/abusemilter", "/usr/bin/abusescan", "/usr/bin/abusectl"} {
		if info, err := os.Stat(bin); err == nil && info.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v", bin, info.Mode())
		}
	}
	if info, err := os.Stat("/var/log/abusemilter"); err != nil || !info.IsDir() {
		t.Errorf("the audit log directory: %v", err)
	}

	// The system user, in the group postfix where that group exists.
	pw := mustOutput(t, "getent", "passwd", "abusemilter")
	if !strings.Contains(pw, "nologin") {
		t.Errorf("abusemilter's passwd entry: %s", pw)
	}
	groups := strings.Fields(mustOutput(t, "id", "-nG", "abusemilter"))
	if !slices.Contains(groups, "abusemilter") {
		t.Errorf("abusemilter is not in its own group: %v", groups)
	}
	if run(t, "getent", "group", "postfix") == nil {
		if !slices.Contains(groups, "postfix") {
			t.Errorf("the group postfix exists but abusemilter is not in it: %v", groups)
		}
		if info, err := os.Stat("/var/spool/postfix"); err == nil && info.IsDir() {
			if _, err := os.Stat("/var/spool/postfix/abusemilter"); err != nil {
				t.Errorf("the socket directory in Postfix's chroot: %v", err)
			}
		}
	} else {
		t.Log("no group postfix here: the fallback (abusemilter's own group only) is what was checked")
	}

	// The configuration files.
	conffiles := mustOutput(t, "dpkg-query", "-W", "-f=${Conffiles}", pkgName)
	for _, c := range []string{confFile, "/etc/logrotate.d/abusemilter"} {
		if !strings.Contains(conffiles, c+" ") {
			t.Errorf("%s is not a conffile: %q", c, conffiles)
		}
	}

	// Not started, not enabled.
	if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/abusemilter.service"); err == nil {
		t.Errorf("the install enabled the service")
	}

	// The installed check, on the installed config, found by the default
	// path order.
	out := installedCheck(t)
	if !strings.Contains(out, "config OK: "+confFile+" (the default path)") || !strings.Contains(out, "mode:      enforce") {
		t.Errorf("abusemilter --check-config:\n%s", out)
	}

	// systemd's own verdict on the installed unit.
	if analyze, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("SKIPPED PART: systemd-analyze is not installed, so the installed unit was not verified by systemd")
	} else {
		var b bytes.Buffer
		cmd := exec.Command(analyze, "verify", unitPath)
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := cmd.Run(); err != nil || strings.TrimSpace(b.String()) != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, b.String())
		}
	}

	// Upgrade over an edited conffile: the edit survives.
	orig, err := os.ReadFile(confFile)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(orig), "\nmode: enforce\n", "\nmode: monitor # edited by the package test\n", 1)
	if edited == string(orig) {
		t.Fatalf("%s has no \"mode: enforce\" line to edit", confFile)
	}
	if err := os.WriteFile(confFile, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dpkg, "-i", newDeb)
	if v := mustOutput(t, "dpkg-query", "-W", "-f=${Version}", pkgName); v != "0.0.2+pkgtest-1" {
		t.Errorf("after the upgrade the version is %q", v)
	}
	if got, err := os.ReadFile(confFile); err != nil || string(got) != edited {
		t.Errorf("the upgrade did not keep the edited %s (%v)", confFile, err)
	}
	if out := installedCheck(t); !strings.Contains(out, "mode:      monitor") {
		t.Errorf("after the upgrade, --check-config:\n%s", out)
	}
	for _, leftover := range []string{confFile + ".dpkg-dist", confFile + ".dpkg-old"} {
		if _, err := os.Stat(leftover); err == nil {
			t.Errorf("the upgrade left %s", leftover)
		}
	}

	// Purge: nothing of the package is left.
	listed := strings.Split(strings.TrimSpace(mustOutput(t, "dpkg", "-L", pkgName)), "\n")
	mustRun(t, dpkg, "--purge", pkgName)
	for _, f := range listed {
		info, err := os.Lstat(f)
		if err != nil {
			continue
		}
		if !info.IsDir() {
			t.Errorf("after purge, %s is left", f)
		}
	}
	for _, p := range created {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("after purge, %s is left", p)
		}
	}
	for _, p := range createdPaths {
		if !slices.Contains(created, p) {
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("purge removed %s, which existed before the install", p)
			}
		}
	}
	if run(t, "getent", "passwd", "abusemilter") == nil {
		t.Errorf("after purge, the user abusemilter is left")
	}
	if run(t, "getent", "group", "abusemilter") == nil {
		t.Errorf("after purge, the group abusemilter is left")
	}
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", pkgName).Output(); err == nil && strings.TrimSpace(string(out)) != "" && !strings.Contains(string(out), "not-installed") {
		t.Errorf("after purge, dpkg still knows the package: %s", out)
	}
}

// makePackage runs make package in the repository root.
func makePackage(t *testing.T, root, version, arches, formats string) {
	t.Helper()
	cmd := exec.Command("make", "package", "VERSION="+version, "PKG_ARCHES="+arches, "PKG_FORMATS="+formats)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make package VERSION=%s: %v\n%s", version, err, out)
	}
}

// installedCheck runs the installed abusemilter --check-config with the
// environment of a root shell without $ABUSEMILTER_CONFIG.
func installedCheck(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("/usr/bin/abusemilter", "--check-config")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ABUSEMILTER_CONFIG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the installed abusemilter --check-config: %v\n%s", err, out)
	}
	return string(out)
}

func run(t *testing.T, name string, args ...string) error {
	t.Helper()
	return exec.Command(name, args...).Run()
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func mustOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatalf("the package was not built: %v", err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
