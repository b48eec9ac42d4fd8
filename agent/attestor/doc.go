// Package attestor tells the node agent who is calling its Workload API: it
// turns the Unix peer credentials of a connection into selectors, the
// "type:value" facts that registration entries are written against.
//
//	a := attestor.New(attestor.Config{Logger: log})
//	creds, _ := peercred.FromContext(ctx) // from grpc.Creds(peercred.TransportCredentials())
//	sels, err := a.Attest(ctx, creds)
//	// sels: unix:uid:1000 unix:user:alice unix:gid:1000 unix:group:alice
//	//       unix:path:/usr/bin/app unix:sha256:9f86d0…
//	if err != nil {
//		// the process is gone or was replaced: answer PermissionDenied
//	}
//	if attestor.Match(entry.Selectors, sels) { /* the caller gets entry */ }
//
// uid and gid come from the kernel (SO_PEERCRED at connect time). The path
// and hash of the executable come from /proc/<pid>, read after the fact, so
// Attest checks that the PID still names the process that connected: it
// polls the pidfd that peercred took at handshake (the process must not have
// exited) and compares the process start time before and after reading
// /proc. Hashes are cached by the executable's device, inode, size, mtime
// and ctime, so a large binary is hashed once however many of its processes
// connect.
//
// Config.Plugins add selectors of other kinds (agent/k8sattest: the
// caller's pod), read inside the same PID-reuse window: after them, the
// pidfd and the start time are checked again.
//
// # Caveats
//
// A process may connect and then exec another binary under the same PID;
// the attestor sees the new binary. Entries keyed on unix:path or
// unix:sha256 are therefore only as strong as the guarantee that nothing
// else holds the connected socket (the same limit as SPIRE's unix
// attestor). On kernels without pidfds (before Linux 5.3) only the
// start-time comparison guards against PID reuse.
//
// An executable replaced or deleted after the process started reads as
// "<path> (deleted)", so it no longer matches unix:path entries until the
// workload restarts.
//
// When the agent may not read another user's /proc/<pid>/exe (it is not
// root), the path and sha256 selectors are left out rather than failing:
// leaving selectors out can only grant less.
package attestor
