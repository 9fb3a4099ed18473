package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/securityserver"
)

// adminFlags are the flags every `passerelle admin` command shares.
type adminFlags struct {
	url, tokenFile string
	json           bool
}

func (f *adminFlags) client() (*securityserver.AdminClient, error) {
	if f.tokenFile == "" {
		return nil, errors.New("--token-file is required (the server's adminTokenFile)")
	}
	return securityserver.NewAdminClient(f.url, f.tokenFile)
}

func newAdminCmd() *cobra.Command {
	f := &adminFlags{}
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage a running security server: clients, services, access rights, keys",
		Long: `Talks to a running security server's admin API (/api/v1/ on its admin listener,
behind the bearer token of its adminTokenFile). Every change applies at once, without
restart, is kept across restarts (DATADIR/admin/state.json, which overlays the YAML
configuration per client or service identifier) and is recorded — who, when, what — in
the audit record (passerelle admin changes).

Identifiers: a client subsystem is INSTANCE/CLASS/MEMBER/SUBSYSTEM; a service is
INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE; a grantee is a member or a subsystem.

Examples:
  T="--admin-url http://127.0.0.1:4000 --token-file /etc/passerelle/admin.token"
  passerelle admin $T clients list
  passerelle admin $T clients add EE/GOV/70000001/hr --auth tls --cert-file hr-system.pem
  passerelle admin $T clients update EE/GOV/70000001/hr --auth token \
      --jwks-url https://idp.example/realms/gov/protocol/openid-connect/certs \
      --issuer https://idp.example/realms/gov --audience passerelle
  passerelle admin $T services add EE/GOV/70000001/services/pets --url https://10.0.0.5:8443/api \
      --ca-bundle backend-ca.pem --timeout 10s --openapi /etc/passerelle/pets.yaml
  passerelle admin $T services update EE/GOV/70000001/services/pets --body-logging metadata
  passerelle admin $T access grant EE/GOV/70000001/services/pets EE/COM/12345678/app \
      --method GET --path '/pets/*'
  passerelle admin $T access revoke EE/GOV/70000001/services/pets EE/COM/12345678/app
  passerelle admin $T keys
  passerelle admin $T changes`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.url, "admin-url", "http://127.0.0.1:4000", "the server's admin listener (listen.admin)")
	pf.StringVar(&f.tokenFile, "token-file", "", "file holding the admin bearer token (the server's adminTokenFile; mode 0600)")
	pf.BoolVar(&f.json, "json", false, "print JSON instead of tables")
	cmd.AddCommand(adminClientsCmd(f), adminServicesCmd(f), adminAccessCmd(f), adminKeysCmd(f), adminChangesCmd(f))
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// --- clients ---

type clientAuthFlags struct {
	mode, certFile, staticTokenFile, jwksURL, issuer, audience, claim string
	certSHA256                                                        []string
}

func (a *clientAuthFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&a.mode, "auth", "none", "how client systems authenticate: none, tls or token")
	fl.StringSliceVar(&a.certSHA256, "cert-sha256", nil, "tls: pinned certificate fingerprint (hex SHA-256), repeatable")
	fl.StringVar(&a.certFile, "cert-file", "", "tls: pin every certificate of this PEM file (a path on the server)")
	fl.StringVar(&a.staticTokenFile, "static-token-file", "", "token: file on the server holding a static bearer token (0600, >= 32 characters)")
	fl.StringVar(&a.jwksURL, "jwks-url", "", "token: the issuer's JWKS URL (bearer JWTs)")
	fl.StringVar(&a.issuer, "issuer", "", "token: the JWTs' required iss")
	fl.StringVar(&a.audience, "audience", "", "token: the JWTs' required aud")
	fl.StringVar(&a.claim, "claim", "", "token: the claim naming the subsystem (default "+securityserver.DefaultJWTClaim+")")
}

func (a *clientAuthFlags) auth() securityserver.ClientAuth {
	out := securityserver.ClientAuth{Mode: securityserver.AuthMode(a.mode), CertSHA256: a.certSHA256,
		CertFile: a.certFile, TokenFile: a.staticTokenFile}
	if a.jwksURL != "" || a.issuer != "" || a.audience != "" {
		out.JWT = &securityserver.JWTAuth{JWKSURL: a.jwksURL, Issuer: a.issuer, Audience: a.audience, Claim: a.claim}
	}
	return out
}

func adminClientsCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "clients", Short: "List, add, update and remove client subsystems (consumer side)"}
	list := &cobra.Command{Use: "list", Short: "List the client subsystems in effect", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			cs, err := c.Clients(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), cs)
			}
			var rows [][]string
			for _, cl := range cs {
				rows = append(rows, []string{cl.ID, string(cl.Auth.Mode)})
			}
			return table(cmd.OutOrStdout(), "ID\tAUTH", rows)
		}}
	show := &cobra.Command{Use: "show ID", Short: "Show a client subsystem", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			cl, err := c.Client(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), cl)
		}}
	var addAuth, updAuth clientAuthFlags
	add := &cobra.Command{Use: "add ID", Short: "Add a client subsystem of this server's owner", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.AddClient(cmd.Context(), securityserver.ClientConfig{ID: args[0], Auth: addAuth.auth()}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added client %s\n", args[0])
			return nil
		}}
	addAuth.add(add)
	update := &cobra.Command{Use: "update ID", Short: "Replace a client subsystem's authentication", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.UpdateClient(cmd.Context(), securityserver.ClientConfig{ID: args[0], Auth: updAuth.auth()}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "updated client %s\n", args[0])
			return nil
		}}
	updAuth.add(update)
	// update replaces the whole setting: an omitted --auth must not quietly
	// mean "none" and switch a client's authentication off.
	update.MarkFlagRequired("auth")
	remove := &cobra.Command{Use: "remove ID", Short: "Remove a client subsystem", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.RemoveClient(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed client %s\n", args[0])
			return nil
		}}
	cmd.AddCommand(list, show, add, update, remove)
	return cmd
}

// --- services ---

type serviceFlags struct {
	url, bodyLogging, caBundle, clientCert, clientKey, serverName, openAPI string
	timeout                                                                time.Duration
	allow                                                                  []string
}

func (s *serviceFlags) add(cmd *cobra.Command, creating bool) {
	fl := cmd.Flags()
	fl.StringVar(&s.url, "url", "", "the backend's base URL (http or https); the r1 resource path is appended")
	fl.DurationVar(&s.timeout, "timeout", 0, "backend timeout (default 30s)")
	fl.StringVar(&s.bodyLogging, "body-logging", "", "full (default) or metadata (length and digest only)")
	fl.StringVar(&s.caBundle, "ca-bundle", "", "HTTPS backend: PEM roots that verify it (a path on the server; default the system roots)")
	fl.StringVar(&s.clientCert, "client-cert", "", "HTTPS backend: client certificate chain presented to it (PEM, a path on the server)")
	fl.StringVar(&s.clientKey, "client-key", "", "HTTPS backend: the client certificate's key (PEM, 0600, a path on the server)")
	fl.StringVar(&s.serverName, "server-name", "", "HTTPS backend: the name its certificate must carry (default the URL's host)")
	fl.StringVar(&s.openAPI, "openapi", "", "the service's OpenAPI 3 file (a path on the server): getOpenAPI serves it, listMethods shows its endpoints")
	if creating {
		fl.StringSliceVar(&s.allow, "allow", nil, "a member or subsystem allowed to call every endpoint, repeatable (default nobody)")
	}
}

// apply sets on svc what the flags given on cmd say.
func (s *serviceFlags) apply(cmd *cobra.Command, svc *securityserver.ServiceConfig) {
	ch := cmd.Flags().Changed
	if ch("url") {
		svc.URL = s.url
	}
	if ch("timeout") {
		svc.Timeout = securityserver.Duration(s.timeout)
	}
	if ch("body-logging") {
		svc.BodyLogging = securityserver.BodyLogging(s.bodyLogging)
	}
	if ch("openapi") {
		svc.OpenAPI = s.openAPI
	}
	if ch("allow") {
		svc.Allow = s.allow
	}
	if ch("ca-bundle") || ch("client-cert") || ch("client-key") || ch("server-name") {
		if svc.TLS == nil {
			svc.TLS = &securityserver.BackendTLS{}
		}
		if ch("ca-bundle") {
			svc.TLS.CABundle = s.caBundle
		}
		if ch("client-cert") {
			svc.TLS.ClientCert = s.clientCert
		}
		if ch("client-key") {
			svc.TLS.ClientKey = s.clientKey
		}
		if ch("server-name") {
			svc.TLS.ServerName = s.serverName
		}
		if *svc.TLS == (securityserver.BackendTLS{}) {
			svc.TLS = nil
		}
	}
}

func adminServicesCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "services", Short: "List, add, update and remove services (provider side)"}
	list := &cobra.Command{Use: "list", Short: "List the services in effect", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ss, err := c.Services(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), ss)
			}
			var rows [][]string
			for _, s := range ss {
				rows = append(rows, []string{s.ID, s.URL, s.Timeout.String(), string(s.BodyLogging), fmt.Sprint(len(s.Allow) + len(s.Rules))})
			}
			return table(cmd.OutOrStdout(), "ID\tURL\tTIMEOUT\tBODY LOGGING\tGRANTS", rows)
		}}
	show := &cobra.Command{Use: "show ID", Short: "Show a service, its backend settings and grants", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			s, err := c.Service(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), s)
		}}
	var addF, updF serviceFlags
	add := &cobra.Command{Use: "add ID --url URL", Short: "Add a service", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			svc := securityserver.ServiceConfig{ID: args[0]}
			addF.apply(cmd, &svc)
			if err := c.AddService(cmd.Context(), svc); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added service %s\n", args[0])
			return nil
		}}
	addF.add(add, true)
	add.MarkFlagRequired("url")
	update := &cobra.Command{Use: "update ID [flags]", Short: "Change a service: only the flags given change", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			svc, err := c.Service(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			updF.apply(cmd, svc)
			if err := c.UpdateService(cmd.Context(), *svc); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "updated service %s\n", args[0])
			return nil
		}}
	updF.add(update, false)
	remove := &cobra.Command{Use: "remove ID", Short: "Remove a service", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.RemoveService(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed service %s\n", args[0])
			return nil
		}}
	cmd.AddCommand(list, show, add, update, remove)
	return cmd
}

// --- access rights ---

func adminAccessCmd(f *adminFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "access", Short: "List, grant and revoke access rights to a service"}
	list := &cobra.Command{Use: "list SERVICE", Short: "List who may call a service", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			gs, err := c.Grants(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), gs)
			}
			var rows [][]string
			orAll := func(v []string, all string) string {
				if len(v) == 0 {
					return all
				}
				return strings.Join(v, ",")
			}
			for _, g := range gs {
				rows = append(rows, []string{g.Client, orAll(g.Methods, "*"), orAll(g.Paths, "/**")})
			}
			return table(cmd.OutOrStdout(), "CLIENT\tMETHODS\tPATHS", rows)
		}}
	var methods, paths []string
	grant := &cobra.Command{Use: "grant SERVICE CLIENT", Short: "Let a member or subsystem call a service (all of it, or some methods on some paths)",
		Long: `Grants CLIENT (INSTANCE/CLASS/MEMBER or INSTANCE/CLASS/MEMBER/SUBSYSTEM) access to SERVICE.
Without --method and --path: every method on every path. With them: only those methods
on those resource paths, where * matches one path segment and a final ** any rest
(e.g. --method GET --path '/pets/*' --path '/store/**'). Takes effect at once.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.Grant(cmd.Context(), args[0], securityserver.AccessRule{Client: args[1], Methods: methods, Paths: paths}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "granted %s access to %s\n", args[1], args[0])
			return nil
		}}
	grant.Flags().StringSliceVar(&methods, "method", nil, "HTTP method allowed, repeatable (default any)")
	grant.Flags().StringSliceVar(&paths, "path", nil, "resource path allowed, with * and a final **, repeatable (default any)")
	revoke := &cobra.Command{Use: "revoke SERVICE CLIENT", Short: "Remove every grant of a member or subsystem on a service", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if err := c.Revoke(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s's access to %s\n", args[1], args[0])
			return nil
		}}
	cmd.AddCommand(list, grant, revoke)
	return cmd
}

// --- keys and changes ---

func adminKeysCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{Use: "keys", Short: "Key and certificate status: expiry, OCSP response status and age", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ks, err := c.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), ks)
			}
			var rows [][]string
			for _, k := range ks {
				ocspState, age := "-", "-"
				if o := k.OCSP; o != nil {
					ocspState = o.Status
					if !o.Fresh {
						ocspState += " (STALE: " + o.Problem + ")"
					}
					if o.AgeSeconds >= 0 {
						age = (time.Duration(o.AgeSeconds) * time.Second).String()
					}
				}
				rows = append(rows, []string{k.Usage, k.Subject, k.NotAfter.Format(time.RFC3339),
					(time.Duration(k.ExpiresInSeconds) * time.Second).Round(time.Hour).String(), ocspState, age})
			}
			return table(cmd.OutOrStdout(), "USAGE\tSUBJECT\tNOT AFTER\tEXPIRES IN\tOCSP\tOCSP AGE", rows)
		}}
}

func adminChangesCmd(f *adminFlags) *cobra.Command {
	return &cobra.Command{Use: "changes", Short: "The audit record of changes made through the admin API (who, when, what)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			rs, err := c.Changes(cmd.Context())
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), rs)
			}
			var rows [][]string
			for _, r := range rs {
				rows = append(rows, []string{fmt.Sprint(r.Seq), r.Time.Format(time.RFC3339), r.Actor, r.Remote, r.Action, r.Target})
			}
			return table(cmd.OutOrStdout(), "SEQ\tTIME (UTC)\tWHO\tFROM\tACTION\tTARGET", rows)
		}}
}
