// Package securityserver is Passerelle's security server: one process that
// plays both roles of an X-Road security server.
//
//   - The consumer side (Server.ConsumerHandler) serves the institution's own
//     client systems over plain HTTP with X-Road's REST r1 protocol: it signs
//     each request (compact JWS), logs it durably, hands its hash to the
//     timestamp batcher and the registry outbox, sends it over mutual TLS to
//     the provider's security server found in the signed federation
//     directory, verifies the signed response and returns it.
//   - The provider side (Server.ProviderHandler) serves other security
//     servers over mutual TLS: it checks that the TLS peer is a registered
//     server of the client, verifies the request's signature, certificate,
//     OCSP response and member binding, refuses replays, checks access
//     rights, calls the service, signs the response bound to the request's
//     hash, logs both and returns it.
//
// Entry points: LoadConfig (YAML), New, Server.Run. The wire protocol is
// described in docs/protocol.md; the pure protocol code lives in rest/.
package securityserver
