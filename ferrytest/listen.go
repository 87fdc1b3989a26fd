package ferrytest

import "net"

type netListener = net.Listener

// listenLocal binds the embedded cluster to a free port on 127.0.0.1 only.
func listenLocal(network string) (net.Listener, error) {
	return net.Listen(network, "127.0.0.1:0")
}
