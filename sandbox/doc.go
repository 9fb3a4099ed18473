// Package sandbox is a generated federation for tests, the sandbox and the
// demo: in one process, on 127.0.0.1, a CA with its OCSP responder, a TSA,
// a hash registry, a signed federation directory, two institutions
// (SANDBOX/GOV/PROVIDER with subsystem services, SANDBOX/GOV/CONSUMER with
// subsystem client) each with its keys and its security server, and the
// provider's sample services: REST hello (a JSON echo) and SOAP getRandom.
//
// Entry points:
//   - Start(ctx, Config) generates everything under Config.Dir and starts it;
//     it returns once both security servers report healthy and
//     DIR/sandbox.json (Info) is written. Close stops it all.
//   - Sandbox exposes what tests need: the URLs (Info), the CA (to revoke:
//     Revoke), the directory (SignDirectory re-signs it, edited or not),
//     each network Service (Stop and Start on the same address to simulate
//     an outage), each Institution's keys, configuration and security
//     server (StopServer, RestartServer), the registry's Log.
//   - HelloHandler and GetRandomHandler (GetRandomResponse) are the sample
//     services, usable on their own; LoadInfo reads a sandbox.json.
//
// Ports: Config.PortBase 0 lets the OS choose every port; otherwise each
// listener is at PortBase plus its Offset* constant (consumer side at
// PortBase). With port base 0 a security server's provider port is known
// only once it runs, after the directory naming it was signed: the
// directory then lists a relay the sandbox opened beforehand, which passes
// the TLS connections through. See docs/sandbox.md.
//
// Everything uses ECDSA P-256 keys, so a sandbox starts in well under a
// second.
package sandbox
