package ferrytest

import "net"

// listenLocal binds the embedded cluster to 127.0.0.1 only, on the port
// kfake asks for (kfake.Ports; 0 picks a free one).
func listenLocal(network, address string) (net.Listener, error) {
	_, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	return net.Listen(network, net.JoinHostPort("127.0.0.1", port))
}
