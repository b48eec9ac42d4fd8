# Pinned code-generation tools, installed from the Go module proxy into
# $(go env GOPATH)/bin. Sourced by .ci/generate and .ci/run.
BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.0

GOBIN_DIR="$(go env GOPATH)/bin"
export PATH="$GOBIN_DIR:$PATH"

install_tools() {
	local want="buf:$BUF_VERSION protoc-gen-go:$PROTOC_GEN_GO_VERSION protoc-gen-go-grpc:$PROTOC_GEN_GO_GRPC_VERSION"
	local stamp="$GOBIN_DIR/.signet-tools"
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
		return 0
	fi
	go install "github.com/bufbuild/buf/cmd/buf@$BUF_VERSION"
	go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
	go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
	mkdir -p "$GOBIN_DIR" && echo "$want" >"$stamp"
}
