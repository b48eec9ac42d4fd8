// Package api implements the CA's two gRPC services: the node API that agents
// call over TLS (signet.node.v1.NodeService) and the admin API that the CLI
// calls over a Unix socket (signet.admin.v1.AdminService).
//
// Both are thin: they authenticate the caller, validate input, and turn one
// request into one store transaction plus signing by package ca. Errors
// become gRPC statuses here, in one place (see status.go), and are logged
// once.
//
//	node := api.NewNodeService(api.NodeConfig{Store: st, CA: c, TrustDomain: td})
//	admin := api.NewAdminService(api.AdminConfig{Store: st, TrustDomain: td, AdminUIDs: []uint32{0}})
//	nodev1.RegisterNodeServiceServer(tlsServer, node)
//	adminv1.RegisterAdminServiceServer(unixServer, admin)
//	grpc.NewServer(grpc.Creds(peercred.TransportCredentials()), admin.ServerOptions()...)
//
// # Caller identity
//
// Agents are identified only by the node SVID they present in the TLS
// handshake, verified against the current bundle, and only while their node
// record exists: evicting a node (deleting its record) cuts it off at once,
// even though its certificate has not expired. Admins are identified by the
// kernel's peer credentials on the admin socket.
package api
