// Command smoke is the in-cluster half of kind-tests/smoke.sh. It runs in a
// FROM-scratch image and checks what lapidary's pods rely on:
//
//	smoke api                  the API server through the kubernetes Service
//	                           (KUBERNETES_SERVICE_HOST/PORT) with the pod's
//	                           service-account token: GET /version and a
//	                           SelfSubjectReview naming the service account
//	smoke git HOST:PORT REPO   git daemon: the upload-pack ref advertisement
//	smoke http URL             authenticated git smart HTTP: 401 without
//	                           credentials, 200 with GIT_TOKEN as basic-auth password
//	smoke message              write a termination message naming the Job index
//
// Several checks run in order when given as one argument list separated by "--".
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		fail("usage: smoke api | git HOST:PORT REPO | http URL | message [-- more ...]")
	}
	for len(args) > 0 {
		n := len(args)
		for i, a := range args {
			if a == "--" {
				n = i
				break
			}
		}
		run(args[:n])
		if n == len(args) {
			break
		}
		args = args[n+1:]
	}
	fmt.Println("smoke: all checks passed")
}

func run(cmd []string) {
	switch {
	case cmd[0] == "api" && len(cmd) == 1:
		checkAPI()
	case cmd[0] == "git" && len(cmd) == 3:
		checkGitDaemon(cmd[1], cmd[2])
	case cmd[0] == "http" && len(cmd) == 2:
		checkGitHTTP(cmd[1])
	case cmd[0] == "message" && len(cmd) == 1:
		writeMessage()
	default:
		fail("unknown check %q", strings.Join(cmd, " "))
	}
}

func fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	fmt.Fprintln(os.Stderr, "smoke: FAIL:", msg)
	_ = writeTermination("FAIL: " + msg)
	os.Exit(1)
}

func checkAPI() {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		fail("KUBERNETES_SERVICE_HOST/PORT not set")
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		fail("service-account token: %v", err)
	}
	caPEM, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		fail("service-account ca.crt: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		fail("no certificate in ca.crt")
	}
	client := &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "kubernetes.default.svc"}},
	}
	base := "https://" + net.JoinHostPort(host, port)
	do := func(method, path string, body []byte) []byte {
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			fail("%v", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			fail("%s %s: %v", method, base+path, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode/100 != 2 {
			fail("%s %s: %s: %s", method, path, resp.Status, out)
		}
		return out
	}
	var version struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.Unmarshal(do("GET", "/version", nil), &version); err != nil || version.GitVersion == "" {
		fail("bad /version answer: %v", err)
	}
	fmt.Printf("smoke: api %s reached as %s, version %s\n", base, host, version.GitVersion)
	review := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	var who struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal(do("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review), &who); err != nil {
		fail("bad SelfSubjectReview answer: %v", err)
	}
	if !strings.HasPrefix(who.Status.UserInfo.Username, "system:serviceaccount:") {
		fail("token authenticated as %q, want a service account", who.Status.UserInfo.Username)
	}
	fmt.Printf("smoke: token authenticated as %s\n", who.Status.UserInfo.Username)
}

// pktLine frames s as a git pkt-line.
func pktLine(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }

func checkGitDaemon(addr, repo string) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		fail("git daemon %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	host, _, _ := net.SplitHostPort(addr)
	if _, err := io.WriteString(conn, pktLine("git-upload-pack "+repo+"\x00host="+host+"\x00")); err != nil {
		fail("git daemon %s: %v", addr, err)
	}
	r := bufio.NewReader(conn)
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		fail("git daemon %s %s: no ref advertisement: %v", addr, repo, err)
	}
	var n int
	if _, err := fmt.Sscanf(string(size[:]), "%04x", &n); err != nil || n < 45 {
		fail("git daemon %s %s: unexpected answer %q", addr, repo, size)
	}
	line := make([]byte, n-4)
	if _, err := io.ReadFull(r, line); err != nil {
		fail("git daemon: %v", err)
	}
	ref := strings.SplitN(string(line), "\x00", 2)[0]
	fmt.Printf("smoke: git daemon %s%s advertises %s\n", addr, repo, strings.TrimSpace(ref))
	_, _ = io.WriteString(conn, "0000")
}

func checkGitHTTP(url string) {
	token := os.Getenv("GIT_TOKEN")
	if token == "" {
		fail("GIT_TOKEN not set")
	}
	client := &http.Client{Timeout: 20 * time.Second}
	get := func(auth bool) (int, string) {
		req, err := http.NewRequest("GET", strings.TrimSuffix(url, "/")+"/info/refs?service=git-upload-pack", nil)
		if err != nil {
			fail("%v", err)
		}
		if auth {
			req.SetBasicAuth("x-access-token", token)
		}
		resp, err := client.Do(req)
		if err != nil {
			fail("git http %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return resp.StatusCode, string(body)
	}
	if code, _ := get(false); code != http.StatusUnauthorized {
		fail("git http %s without credentials: status %d, want 401", url, code)
	}
	code, body := get(true)
	if code != http.StatusOK || !strings.Contains(body, "# service=git-upload-pack") {
		fail("git http %s with token: status %d", url, code)
	}
	fmt.Printf("smoke: git http %s: 401 without token, 200 with token\n", url)
}

func writeMessage() {
	msg := fmt.Sprintf(`{"index":%q,"pod":%q}`, os.Getenv("JOB_COMPLETION_INDEX"), os.Getenv("HOSTNAME"))
	if err := writeTermination(msg); err != nil {
		fail("termination message: %v", err)
	}
	fmt.Println("smoke: wrote termination message", msg)
}

// writeTermination writes the pod's termination message; the file exists only
// inside a container (the kubelet mounts it), so it is never created here.
func writeTermination(msg string) error {
	f, err := os.OpenFile("/dev/termination-log", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(msg)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
