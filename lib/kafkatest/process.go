package kafkatest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// processEnv tells a child started by StartProcess to serve a broker with
// this many partitions per topic.
const processEnv = "ALUMINI_KAFKATEST_PARTITIONS"

// Process is a one-broker kfake cluster in a child process: this binary
// again, serving from ServeProcess. Benchmarks use it so that the process
// CPU time they read is the measured service's alone, not the broker's.
type Process struct {
	Addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// StartProcess starts the child with partitions per topic and returns
// once it listens.
func StartProcess(partitions int) (*Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), processEnv+"="+strconv.Itoa(partitions))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the broker process: %w", err)
	}
	p := &Process{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := p.out.ReadString('\n')
	if err != nil {
		return nil, errors.Join(fmt.Errorf("reading the broker's address: %w", err), p.Stop())
	}
	p.Addr = strings.TrimSpace(line)
	return p, nil
}

// Do sends request (one line) to the child's handler and returns its
// answer: work done beside the broker, such as producing.
func (p *Process) Do(request string) (string, error) {
	if _, err := fmt.Fprintln(p.stdin, request); err != nil {
		return "", err
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("broker process: %w", err)
	}
	line = strings.TrimSpace(line)
	if msg, failed := strings.CutPrefix(line, "error "); failed {
		return "", errors.New(msg)
	}
	return strings.TrimPrefix(line, "ok "), nil
}

// Stop ends the child and waits for it.
func (p *Process) Stop() error {
	return errors.Join(p.stdin.Close(), p.cmd.Wait()) // the child serves until its stdin closes
}

// ServeProcess is the child's side of StartProcess: in a child it serves
// the broker, answering each request line with handle (addr is the
// broker's), until its stdin closes, then exits. In any other process it
// returns at once. Call it first in main.
func ServeProcess(handle func(addr, request string) (string, error)) {
	n := os.Getenv(processEnv)
	if n == "" {
		return
	}
	partitions, err := strconv.Atoi(n)
	if err == nil {
		err = serveProcess(int32(partitions), handle)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "broker process:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serveProcess(partitions int32, handle func(addr, request string) (string, error)) error {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(int(partitions)))
	if err != nil {
		return err
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	fmt.Println(addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		answer, err := handle(addr, in.Text())
		if err != nil {
			fmt.Println("error", strings.ReplaceAll(err.Error(), "\n", " "))
			continue
		}
		fmt.Println("ok", answer)
	}
	return in.Err()
}
