// Command labpod is the one program inside the cluster lab's own images (built FROM scratch,
// statically linked): `labpod pause` is the pod sandbox's pause process (containerd's
// sandbox_image; the lab cannot pull registry.k8s.io/pause), `labpod serve` is the sample
// application behind the lab's LoadBalancer Services. It answers every TCP connection with the
// name of the node its pod runs on, as the process lab's backends do, so the same probe loop reads
// both.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: labpod pause | labpod serve [--port N]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "pause":
		pause()
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		port := fs.Int("port", 8080, "TCP port to answer on")
		_ = fs.Parse(os.Args[2:])
		if err := serve(*port); err != nil {
			fmt.Fprintf(os.Stderr, "labpod: %v\n", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "labpod: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// pause sleeps until SIGTERM or SIGINT. As PID 1 of the sandbox it also reaps orphans (SIGCHLD),
// as the official pause container does.
func pause() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

func serve(port int) error {
	node := os.Getenv("NODE_NAME")
	if node == "" {
		node = "unknown-node"
	}
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		<-sigs
		os.Exit(0)
	}()
	reply := []byte(node + "\n")
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		_, _ = c.Write(reply)
		_ = c.Close()
	}
}
