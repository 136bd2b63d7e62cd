package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/vigil-project/vigil/engine"
)

// Client talks to an agent's HTTP API.
type Client struct {
	// Addr is the agent's --http-addr, IP:PORT.
	Addr string
	HTTP *http.Client
	// Token is sent as 'Authorization: Bearer Token' when set.
	Token string
	// scheme is http or https.
	scheme string
}

// NewClient returns a client of the agent at addr.
func NewClient(addr string) *Client {
	return &Client{Addr: addr, HTTP: &http.Client{Timeout: 60 * time.Second}, scheme: "http"}
}

// ClientOptions are how to reach an agent whose API has a token or TLS.
type ClientOptions struct {
	Token string
	// CACert is a PEM file of the CA that signed the agent's certificate
	// (empty: the system's roots). With it, or with an address written
	// https://IP:PORT, the client speaks HTTPS.
	CACert string
}

// NewClientWith returns a client of the agent at addr ("IP:PORT" or
// "https://IP:PORT") with a token and TLS settings.
func NewClientWith(addr string, o ClientOptions) (*Client, error) {
	c := NewClient(addr)
	c.Token = o.Token
	if rest, ok := strings.CutPrefix(addr, "https://"); ok {
		c.Addr, c.scheme = rest, "https"
	} else if rest, ok := strings.CutPrefix(addr, "http://"); ok {
		c.Addr = rest
	}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("--http-ca-cert: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--http-ca-cert %s: no PEM certificate in it", o.CACert)
		}
		c.scheme = "https"
		c.HTTP.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return c, nil
}

// newRequest makes a request to the agent with the token.
func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.scheme+"://"+c.Addr+path, body)
	if err != nil {
		return nil, fmt.Errorf("--http-addr %q: %v", c.Addr, err)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return c.explain(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("agent at %s: reading the answer: %v", c.Addr, err)
	}
	if resp.StatusCode/100 != 2 {
		return c.answerError(resp, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("agent at %s: bad answer: %v", c.Addr, err)
		}
	}
	return nil
}

// answerError is the error of a non-2xx answer: the API's message, or the
// status.
func (c *Client) answerError(resp *http.Response, data []byte) error {
	var e ErrorResponse
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return fmt.Errorf("agent at %s answered %s", c.Addr, resp.Status)
}

// explain says what a failed request means to the user.
func (c *Client) explain(err error) error {
	var ue *url.Error
	var oe *net.OpError
	if errors.As(err, &ue) && errors.As(err, &oe) {
		return fmt.Errorf("no agent answering at %s (is `vigil agent` running there? see --http-addr): %v", c.Addr, oe.Err)
	}
	return fmt.Errorf("agent at %s: %v", c.Addr, err)
}

// Members lists the members; status, if not empty, keeps only those with
// that agreed status (a comma list).
func (c *Client) Members(ctx context.Context, status string) ([]MemberInfo, error) {
	var out []MemberInfo
	path := "/v1/members"
	if status != "" {
		path += "?status=" + url.QueryEscape(status)
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Info describes the agent.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var out Info
	return out, c.do(ctx, http.MethodGet, "/v1/info", nil, &out)
}

// Join asks the agent to join the given addresses.
func (c *Client) Join(ctx context.Context, addrs []string) (int, error) {
	var out JoinResponse
	return out.Joined, c.do(ctx, http.MethodPost, "/v1/join", JoinRequest{Addrs: addrs}, &out)
}

// Leave asks the agent to leave the cluster gracefully and stop.
func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/leave", nil, nil)
}

// ForceLeave moves a failed node to left; prune also forgets it at once.
func (c *Client) ForceLeave(ctx context.Context, node string, prune bool) error {
	return c.do(ctx, http.MethodPost, "/v1/force-leave", ForceLeaveRequest{Node: node, Prune: prune}, nil)
}

// ForceRemove removes members without a quorum (see ForceRemoveRequest).
func (c *Client) ForceRemove(ctx context.Context, nodes []string, confirm bool) (uint64, error) {
	var out ForceRemoveResponse
	err := c.do(ctx, http.MethodPost, "/v1/force-remove", ForceRemoveRequest{Nodes: nodes, Confirm: confirm}, &out)
	return out.Epoch, err
}

// Event sends a user event.
func (c *Client) Event(ctx context.Context, name string, payload []byte, coalesce bool) error {
	return c.do(ctx, http.MethodPost, "/v1/event", EventRequest{Name: name, Payload: string(payload), Coalesce: coalesce}, nil)
}

// Views returns the agreed view and the decided log.
func (c *Client) Views(ctx context.Context) (Views, error) {
	var out Views
	return out, c.do(ctx, http.MethodGet, "/v1/views", nil, &out)
}

// Why explains what the agent knows about a node's status.
func (c *Client) Why(ctx context.Context, node string) (Why, error) {
	var out Why
	return out, c.do(ctx, http.MethodGet, "/v1/why/"+url.PathEscape(node), nil, &out)
}

// Scores lists the agent's monitored peers with their scores.
func (c *Client) Scores(ctx context.Context) ([]Score, error) {
	var out []Score
	return out, c.do(ctx, http.MethodGet, "/v1/scores", nil, &out)
}

// Recoveries returns the recovery journal, oldest decision first.
func (c *Client) Recoveries(ctx context.Context) ([]engine.Job, error) {
	var out []engine.Job
	return out, c.do(ctx, http.MethodGet, "/v1/recoveries", nil, &out)
}
