package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/securityserver"
)

// deployDir is the repository's deploy/ folder.
const deployDir = "../../deploy"

var (
	helpMu    sync.Mutex
	helpCache = map[string]map[string]bool{}
	flagRE    = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)`)
)

// commandFlags returns the flags of `passerelle path...` from its --help,
// failing the test if path is not a real subcommand.
func commandFlags(t *testing.T, path []string) map[string]bool {
	t.Helper()
	key := strings.Join(path, " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if f, ok := helpCache[key]; ok {
		return f
	}
	out, err := exec.Command(bin, append(slices.Clone(path), "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("passerelle %s --help: %v\n%s", key, err, out)
	}
	// Cobra answers an unknown subcommand's --help with its parent's help:
	// the usage line tells which command answered.
	usage := false
	flags := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "passerelle "+key+" ") || strings.TrimSpace(line) == "passerelle "+key {
			usage = true
		}
		if m := flagRE.FindStringSubmatch(line); m != nil {
			flags[m[1]] = true
		}
	}
	if !usage {
		t.Errorf("passerelle %s is not a subcommand (its --help shows another command's usage)", key)
	}
	helpCache[key] = flags
	return flags
}

// checkCommand checks that args (what follows `passerelle`) name a real
// subcommand and only flags it has.
func checkCommand(t *testing.T, where string, args []string) {
	t.Helper()
	var path []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		path = append(path, a)
	}
	if len(path) == 0 {
		t.Errorf("%s: no subcommand in %q", where, args)
		return
	}
	flags := commandFlags(t, path)
	for _, a := range args[len(path):] {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !flags[name] {
			t.Errorf("%s: passerelle %s has no flag --%s", where, strings.Join(path, " "), name)
		}
	}
}

// shellCommands extracts the passerelle invocations from shell text: each
// starts at a word "passerelle" (or "$P", the init script's name for it) and
// ends at a shell separator or the end of the line (backslash continuations
// joined).
func shellCommands(script string) [][]string {
	script = strings.ReplaceAll(script, "\\\n", " ")
	var cmds [][]string
	for _, line := range strings.Split(script, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		words := strings.Fields(line)
		for i := 0; i < len(words); i++ {
			if w := strings.Trim(words[i], `"`); w != "passerelle" && w != "$P" {
				continue
			}
			var cmd []string
			for _, w := range words[i+1:] {
				if w == ";" || w == "||" || w == "&&" || w == "|" || w == ">" || strings.HasPrefix(w, "#") {
					break
				}
				end := strings.HasSuffix(w, ";")
				cmd = append(cmd, strings.Trim(strings.TrimSuffix(w, ";"), `"`))
				if end {
					break
				}
			}
			cmds = append(cmds, cmd)
			i += len(cmd)
		}
	}
	return cmds
}

// compose is the part of a compose file the test reads. yaml.v3 resolves
// the file's anchors and merge keys.
type compose struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
			Target     string `yaml:"target"`
		} `yaml:"build"`
		User      string         `yaml:"user"`
		Command   []string       `yaml:"command"`
		Volumes   []string       `yaml:"volumes"`
		Ports     []string       `yaml:"ports"`
		DependsOn map[string]any `yaml:"depends_on"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestDeployCompose parses deploy/docker-compose.yaml and checks that it
// describes the federation with real subcommands, flags, volumes and files.
func TestDeployCompose(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "docker-compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	dockerfile, err := os.ReadFile(filepath.Join(deployDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"init", "ca", "tsa", "registry", "directory", "directory-signer", "ss-a", "ss-b"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("no service %q", want)
		}
	}
	used := map[string]bool{}
	for name, s := range c.Services {
		t.Run(name, func(t *testing.T) {
			if len(s.Command) == 0 {
				t.Fatal("no command")
			}
			if s.Build != nil {
				if s.User != "65532:65532" {
					t.Errorf("user = %q, want the image's non-root 65532:65532", s.User)
				}
				if got := filepath.Join(deployDir, s.Build.Context, s.Build.Dockerfile); got != filepath.Join(deployDir, "Dockerfile") {
					t.Errorf("build names %s, want deploy/Dockerfile", got)
				}
				if !regexp.MustCompile(`(?m)^FROM .* AS ` + regexp.QuoteMeta(s.Build.Target) + `$`).Match(dockerfile) {
					t.Errorf("build target %q is not a stage of deploy/Dockerfile", s.Build.Target)
				}
				switch {
				case s.Build.Target == "runtime": // ENTRYPOINT is the binary
					checkCommand(t, name, s.Command)
				case s.Command[0] == "/bin/sh":
					cmds := shellCommands(s.Command[len(s.Command)-1])
					if len(cmds) == 0 {
						t.Errorf("shell command runs no passerelle command: %q", s.Command)
					}
					for _, cmd := range cmds {
						checkCommand(t, name, cmd)
					}
				case s.Command[0] == "/usr/local/bin/init-federation.sh":
					if !strings.Contains(string(dockerfile), "deploy/docker/init-federation.sh /usr/local/bin/init-federation.sh") {
						t.Error("the tools image does not install init-federation.sh")
					}
				default:
					t.Errorf("unexpected command %q", s.Command)
				}
			}
			for _, v := range s.Volumes {
				src, _, _ := strings.Cut(v, ":")
				if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
					if _, err := os.Stat(filepath.Join(deployDir, src)); err != nil {
						t.Errorf("bind mount %s: %v", src, err)
					}
					continue
				}
				used[src] = true
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("volume %q is not declared", src)
				}
			}
			for dep := range s.DependsOn {
				if _, ok := c.Services[dep]; !ok {
					t.Errorf("depends on unknown service %q", dep)
				}
			}
		})
	}
	for v := range c.Volumes {
		if !used[v] {
			t.Errorf("volume %q is declared but no service mounts it", v)
		}
	}
	for _, p := range c.Services["ss-a"].Ports {
		if strings.HasPrefix(p, "127.0.0.1:8080:") {
			return
		}
	}
	t.Error("ss-a does not publish its consumer side on 127.0.0.1:8080")
}

// TestDeployInitScript runs the compose init job's script on loopback
// folders with the binary under test, then checks what it made: a signed
// directory the servers accept (the script verifies it itself), keys 0600,
// certificates bound to the configured members, the compose server
// configurations loadable, and a second run that does nothing.
func TestDeployInitScript(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	root := t.TempDir()
	dirs := map[string]string{
		"CA_DIR": "ca", "TSA_DIR": "tsa", "REGISTRY_DIR": "registry", "DIRECTORY_DIR": "directory",
		"SIGNER_DIR": "directory-signer", "TRUST_DIR": "trust", "SS_A_KEYS": "ss-a", "SS_B_KEYS": "ss-b",
	}
	env := append(os.Environ(), "PASSERELLE="+bin)
	for k, d := range dirs {
		p := filepath.Join(root, d)
		// As the image's volumes: present, empty, 0700.
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		env = append(env, k+"="+p)
	}
	script := filepath.Join(deployDir, "docker", "init-federation.sh")
	run := func() string {
		cmd := exec.Command("sh", script)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("init-federation.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	out := run()
	if !strings.Contains(out, "2 members, 2 servers, 1 CAs, 1 TSAs, 1 registries") {
		t.Errorf("directory verify did not report the whole federation:\n%s", out)
	}
	for _, f := range []string{"ca/ca-key.pem", "tsa/tsa-key.pem", "registry/registry.key", "registry/tls.key",
		"directory-signer/directory.key", "ss-a/auth.key", "ss-a/sign.key", "ss-a/admin.token", "ss-b/auth.key", "ss-b/admin.token"} {
		fi, err := os.Stat(filepath.Join(root, f))
		if err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	for _, f := range []string{"ca.pem", "directory.pem", "tsa.pem", "registry.vkey"} {
		if _, err := os.Stat(filepath.Join(root, "trust", f)); err != nil {
			t.Errorf("trust directory: %v", err)
		}
	}

	// The compose configurations, with the containers' paths mapped to
	// these folders, load; their owners are the members the keys bind.
	for _, x := range []struct{ config, keys string }{{"ss-a.yaml", "ss-a"}, {"ss-b.yaml", "ss-b"}} {
		t.Run(x.config, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(deployDir, "compose", x.config))
			if err != nil {
				t.Fatal(err)
			}
			data = []byte(strings.NewReplacer(
				"/etc/passerelle/keys", filepath.Join(root, x.keys),
				"/etc/passerelle/trust", filepath.Join(root, "trust"),
				"/var/lib/passerelle/server", filepath.Join(root, x.keys+"-data"),
			).Replace(string(data)))
			path := filepath.Join(root, x.config)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := securityserver.LoadConfig(path)
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			for _, f := range []string{cfg.Keys.AuthCert, cfg.Keys.SignCert} {
				certs, err := pki.LoadCertificates(f)
				if err != nil {
					t.Fatal(err)
				}
				m, err := pki.MemberFromCert(certs[0])
				if err != nil || m.String() != cfg.Owner {
					t.Errorf("%s binds %v (%v), want owner %s", f, m, err, cfg.Owner)
				}
			}
		})
	}

	if out := run(); !strings.Contains(out, "already initialized") {
		t.Errorf("second run:\n%s\nwant it to do nothing", out)
	}
}

// hardening lists the settings every daemon's unit must have.
var hardening = []string{
	"User=passerelle", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
	"PrivateDevices=yes", "CapabilityBoundingSet=", "RestrictAddressFamilies=", "MemoryDenyWriteExecute=yes",
	"SystemCallFilter=@system-service", "ReadWritePaths=",
}

// TestDeploySystemd checks deploy/systemd: every ExecStart names a real
// subcommand and flags, every ${VAR} it uses is set in the example
// environment file, the hardening options are there, and systemd-analyze
// verify accepts the units (when installed).
func TestDeploySystemd(t *testing.T) {
	units, err := filepath.Glob(filepath.Join(deployDir, "systemd", "*"))
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in deploy/systemd: %v", err)
	}
	varRE := regexp.MustCompile(`\$\{([A-Z_]+)\}`)
	for _, u := range units {
		name := filepath.Base(u)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(u)
			if err != nil {
				t.Fatal(err)
			}
			text := string(data)
			env := map[string]bool{}
			for _, line := range strings.Split(text, "\n") {
				if f, ok := strings.CutPrefix(line, "EnvironmentFile="); ok {
					f = strings.TrimPrefix(f, "-")
					vars, err := os.ReadFile(filepath.Join(deployDir, "config", filepath.Base(f)))
					if err != nil {
						t.Fatalf("EnvironmentFile %s: no example in deploy/config: %v", f, err)
					}
					for _, l := range strings.Split(string(vars), "\n") {
						if k, _, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
							env[k] = true
						}
					}
				}
			}
			var execs int
			for _, line := range strings.Split(text, "\n") {
				cmd, ok := strings.CutPrefix(line, "ExecStart=")
				if !ok {
					continue
				}
				execs++
				words := strings.Fields(cmd)
				if words[0] != "/usr/local/bin/passerelle" {
					t.Errorf("ExecStart runs %s, want /usr/local/bin/passerelle", words[0])
					continue
				}
				checkCommand(t, name, words[1:])
				for _, m := range varRE.FindAllStringSubmatch(cmd, -1) {
					if !env[m[1]] {
						t.Errorf("ExecStart uses ${%s}, which the example environment file does not set", m[1])
					}
				}
			}
			if strings.HasSuffix(name, ".service") {
				if execs != 1 {
					t.Errorf("%d ExecStart lines, want 1", execs)
				}
				for _, h := range hardening {
					if !strings.Contains(text, "\n"+h) {
						t.Errorf("lacks %s", h)
					}
				}
			}
		})
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("NOTE systemd-analyze is not installed: units not verified by systemd (apt-get install systemd)")
		return
	}
	// systemd-analyze verify wants the ExecStart binary to exist and a
	// template instantiated: copies pointing at the binary under test.
	tmp := t.TempDir()
	var args []string
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.Replace(filepath.Base(u), "@.", "@test.", 1)
		data = []byte(strings.ReplaceAll(string(data), "/usr/local/bin/passerelle", bin))
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "./"+name)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, args...)...)
	cmd.Dir = tmp
	out, err := cmd.CombinedOutput()
	// It exits 0 on some warnings (an unparsable value is ignored): any
	// output is a finding.
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
