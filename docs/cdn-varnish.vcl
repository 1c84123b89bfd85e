# Vela behind Varnish (docs/cdn.md). Replace ORIGIN_HOST and ORIGIN_PORT
# (Vela's HTTP address or a cluster's load balancer). tests/cdn_e2e.rs runs
# this file as it is, with Debian 12's Varnish 7.1.
vcl 4.1;

backend vela {
    .host = "ORIGIN_HOST";
    .port = "ORIGIN_PORT";
    # A blocking LL-HLS reload is held by Vela until the part it names
    # exists (up to three target durations): wait for it.
    .first_byte_timeout = 30s;
    .between_bytes_timeout = 30s;
}

sub vcl_recv {
    # Vela writes the request's host and scheme into absolute URLs (DASH
    # UTCTiming, licence URLs). A TLS terminator in front of Varnish sets
    # X-Forwarded-Proto; without one, the request was plain HTTP.
    if (!req.http.X-Forwarded-Proto) {
        set req.http.X-Forwarded-Proto = "http";
    }
    # The whole URL, query included, is the cache key (Varnish's default):
    # _HLS_msn, _HLS_part, _HLS_skip and token= are all part of what a
    # playlist answers, so no query parameter is stripped or sorted away.
    # Everything else is Varnish's built-in vcl_recv: GET and HEAD are
    # looked up, requests with Authorization or cookies pass.
}

sub vcl_hash {
    hash_data(req.http.X-Forwarded-Proto);
    # Falls through to the built-in vcl_hash: URL and Host.
}

sub vcl_backend_response {
    # Vela's Cache-Control decides what is kept and for how long (playlists
    # s-maxage=1, blocking reloads s-maxage=30, media immutable, errors and
    # keys no-cache/no-store); Varnish honours s-maxage and max-age itself.
    # No grace: a live playlist served stale while it is refetched would
    # send players back in time.
    set beresp.grace = 0s;
    # Errors (a segment that left the window, an unknown stream) are not
    # kept; Vela marks them no-cache, this makes it explicit.
    if (beresp.status >= 400) {
        set beresp.uncacheable = true;
        set beresp.ttl = 0s;
    }
    # Concurrent requests for one URL wait for the first one's answer
    # (Varnish's waiting list): one request per part and per playlist
    # version reaches Vela. Media is streamed to them as it arrives
    # (LL-DASH chunks, beresp.do_stream is on by default).
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
