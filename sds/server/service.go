package server

import (
	"context"

	"google.golang.org/grpc"

	envoypb "github.com/signet-mesh/signet/proto/signet/envoy/v1"
)

// ServiceName is the gRPC service SDS clients (Envoy) call.
const ServiceName = "envoy.service.secret.v3.SecretDiscoveryService"

// Full method names of the SDS service.
const (
	StreamSecretsMethod = "/" + ServiceName + "/StreamSecrets"
	DeltaSecretsMethod  = "/" + ServiceName + "/DeltaSecrets"
	FetchSecretsMethod  = "/" + ServiceName + "/FetchSecrets"
)

// The service is described by hand rather than generated from Envoy's
// sds.proto: its messages are signet's wire-compatible subset
// (proto/signet/envoy/v1), so the agent links none of go-control-plane
// (issue 19).

// StreamSecretsStream is the server side of a StreamSecrets stream.
type StreamSecretsStream = grpc.BidiStreamingServer[envoypb.DiscoveryRequest, envoypb.DiscoveryResponse]

// DeltaSecretsStream is the server side of a DeltaSecrets stream.
type DeltaSecretsStream = grpc.BidiStreamingServer[envoypb.DeltaDiscoveryRequest, envoypb.DeltaDiscoveryResponse]

// sdsService is what the service descriptor dispatches to.
type sdsService interface {
	StreamSecrets(StreamSecretsStream) error
	DeltaSecrets(DeltaSecretsStream) error
	FetchSecrets(context.Context, *envoypb.DiscoveryRequest) (*envoypb.DiscoveryResponse, error)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*sdsService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "FetchSecrets",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(envoypb.DiscoveryRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(sdsService).FetchSecrets(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: FetchSecretsMethod}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(sdsService).FetchSecrets(ctx, req.(*envoypb.DiscoveryRequest))
			})
		},
	}},
	Streams: []grpc.StreamDesc{
		{
			StreamName: "DeltaSecrets",
			Handler: func(srv any, stream grpc.ServerStream) error {
				return srv.(sdsService).DeltaSecrets(&grpc.GenericServerStream[envoypb.DeltaDiscoveryRequest, envoypb.DeltaDiscoveryResponse]{ServerStream: stream})
			},
			ServerStreams: true,
			ClientStreams: true,
		},
		{
			StreamName: "StreamSecrets",
			Handler: func(srv any, stream grpc.ServerStream) error {
				return srv.(sdsService).StreamSecrets(&grpc.GenericServerStream[envoypb.DiscoveryRequest, envoypb.DiscoveryResponse]{ServerStream: stream})
			},
			ServerStreams: true,
			ClientStreams: true,
		},
	},
	Metadata: "envoy/service/secret/v3/sds.proto",
}
