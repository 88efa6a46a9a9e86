"""The data plane: client connections, their requests and the upstream connections.

One request, file by file. Each file calls only the next one; answers come back through a small
protocol that the caller defines, so reading goes one way:

1. `listener` accepts the client's connection (with TLS, `tls_contexts` picks the certificate)
   and gives it to a `downstream.DownstreamProtocol`.
2. `downstream` parses the request head and makes an `exchange.Exchange` of it. Requests
   pipelined behind it wait their turn, reading paused; one timer per connection watches the
   header, body, keep-alive and upstream read timeouts.
3. `exchange` routes the request, picks an endpoint, takes an idle connection from its pool or
   opens one, and sends the head and the body (kept, if small, to replay on a retry).
4. `upstream`: an `UpstreamConnection` parses the response and reports each part to the exchange
   through `upstream.ResponseSink` (head, body, done, failed).

And back: the exchange writes the answer to the client through `exchange.Downstream`, tries
another endpoint when a try fails before its answer began, and tells the downstream when it is
done (`exchange_finished`): the next pipelined request begins, or the connection idles or closes.
After an Upgrade answered 101 the same exchange relays bytes both ways until either side closes.

`context.ServerContext` is what every connection shares: the routing snapshot, the upstream
pools, metrics and settings.
"""
