"""Configurations for running fullduplex behind nginx or Apache httpd: ``fullduplex proxy-config``.

Each function returns a complete configuration file, usable as is (``nginx -c FILE``,
``apache2 -f FILE``) or as a model for an existing one. What each line is for is said in the
file itself, as comments; the rules (from the nginx and Apache documentation):

* Upgrade and Connection are hop-by-hop headers: nginx must re-send them
  (``proxy_http_version 1.1`` and the ``$http_upgrade`` map); Apache 2.4.47+ tunnels with
  ``ProxyPass ... upgrade=websocket`` (mod_proxy_wstunnel, for older versions, is a comment).
* A proxied connection with no data for ``proxy_read_timeout`` (nginx's default: 60 s) is cut:
  the timeout must stay above the server's ping interval (20 s by default), whose pings are
  what keep an idle WebSocket alive through the proxy.
* Responses are not buffered (``proxy_buffering off``), for the streaming transports.
* On ``nginx -s reload``, old workers would wait for every WebSocket to end:
  ``worker_shutdown_timeout`` caps that wait.
* With a ``path`` other than ``/``, the proxy strips it: the app is served at ``/`` and its
  pages must use relative URLs (the sample pages do).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import __version__

__all__ = ["DEFAULT_READ_TIMEOUT", "ProxyOptions", "apache", "nginx"]

DEFAULT_READ_TIMEOUT = 75
"""Seconds of silence after which the proxy cuts a connection: above the default ping interval
(20 s) plus its timeout (20 s), with a margin."""

_UPSTREAM = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class ProxyOptions:
    """What the configuration says.

    Attributes:
        upstreams: The fullduplex servers, ``HOST:PORT`` each (more than one: load-balanced).
        path: The URL prefix proxied, starting and ending with ``/``; stripped before the app.
        listen: The port the proxy listens on (or ``ADDRESS:PORT``).
        server_name: nginx's ``server_name``, Apache's ``ServerName``.
        read_timeout: Seconds of silence before the proxy cuts a connection.
        runtime_dir: Where the pid file, the logs and the temporary files go; None leaves the
            proxy's own defaults (those of its packaged configuration).
        modules_dir: Where Apache's modules are (Debian: /usr/lib/apache2/modules).
    """

    upstreams: Sequence[str] = ("127.0.0.1:8000",)
    path: str = "/"
    listen: str = "80"
    server_name: str = "localhost"
    read_timeout: int = DEFAULT_READ_TIMEOUT
    runtime_dir: str | None = None
    modules_dir: str = "/usr/lib/apache2/modules"

    def __post_init__(self) -> None:
        if not self.upstreams:
            raise ValueError("at least one upstream HOST:PORT")
        for upstream in self.upstreams:
            if not _UPSTREAM.match(upstream):
                raise ValueError(f"an upstream is HOST:PORT, not {upstream!r}")
        if not (self.path.startswith("/") and self.path.endswith("/")) or any(
            c.isspace() or c in "\"';{}" for c in self.path
        ):
            raise ValueError(f"the path starts and ends with '/', e.g. /rt/: {self.path!r}")
        if self.read_timeout <= 0:
            raise ValueError("the read timeout is a positive number of seconds")


def _runtime(options: ProxyOptions, name: str) -> str:
    assert options.runtime_dir is not None
    return str(Path(options.runtime_dir) / name)


def nginx(options: ProxyOptions) -> str:
    """A complete ``nginx.conf`` proxying ``options.path`` to the upstreams."""
    o = options
    runtime_main = runtime_http = ""
    if o.runtime_dir is not None:
        runtime_main = (
            f"pid {_runtime(o, 'nginx.pid')};\nerror_log {_runtime(o, 'nginx-error.log')};\n"
        )
        runtime_http = f"    access_log {_runtime(o, 'nginx-access.log')};\n" + "".join(
            f"    {kind}_temp_path {_runtime(o, 'nginx-' + kind)};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
    servers = "".join(f"        server {upstream};\n" for upstream in o.upstreams)
    # With a prefix, proxy_pass with a URI ("/") replaces the matched prefix: the app sees "/".
    target = "http://fullduplex/" if o.path != "/" else "http://fullduplex"
    return f"""\
# fullduplex {__version__} behind nginx: `fullduplex proxy-config nginx`.
# Run it as is (nginx -c THIS_FILE), or copy the http {{}} part into your configuration.
worker_processes auto;
# On reload, old workers stay until their WebSockets end: cap the wait (nginx 1.11.11+).
worker_shutdown_timeout 30s;
{runtime_main}
events {{
    worker_connections 4096;
}}

http {{
{runtime_http}    # Upgrade and Connection are hop-by-hop: re-send them, "close" for plain requests.
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    upstream fullduplex {{
{servers}    }}

    server {{
        listen {o.listen};
        server_name {o.server_name};

        location {o.path} {{
            proxy_pass {target};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            # Honoured by fullduplex only from peers it is told to trust (the limits' proxies).
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # A connection silent this long is cut: keep it above the server's ping interval
            # (20 s by default), whose pings keep idle WebSockets alive.
            proxy_read_timeout {o.read_timeout}s;
            proxy_send_timeout {o.read_timeout}s;
            # Pass responses on as they come (streaming transports, server-sent events).
            proxy_buffering off;
        }}
    }}
}}
"""


def apache(options: ProxyOptions) -> str:
    """A complete Apache httpd 2.4.47+ configuration proxying ``options.path`` to the upstreams.

    The mod_proxy_wstunnel form, for Apache before 2.4.47, is included as comments.
    """
    o = options
    mods = o.modules_dir.rstrip("/")
    modules = ["mpm_event", "authz_core", "proxy", "proxy_http"]
    balanced = len(o.upstreams) > 1
    if balanced:
        modules += ["slotmem_shm", "proxy_balancer", "lbmethod_byrequests"]
    loads = "".join(f"LoadModule {m}_module {mods}/mod_{m}.so\n" for m in modules)
    runtime = ""
    if o.runtime_dir is not None:
        runtime = (
            f"DefaultRuntimeDir {o.runtime_dir}\n"
            f"PidFile {_runtime(o, 'apache2.pid')}\n"
            f"ErrorLog {_runtime(o, 'apache2-error.log')}\n"
        )
    worker = f"upgrade=websocket timeout={o.read_timeout}"
    if balanced:
        members = "".join(
            f'    BalancerMember "http://{upstream}" {worker}\n' for upstream in o.upstreams
        )
        proxy = (
            f'<Proxy "balancer://fullduplex">\n{members}</Proxy>\n'
            f'ProxyPass "{o.path}" "balancer://fullduplex/"\n'
            f'ProxyPassReverse "{o.path}" "balancer://fullduplex/"\n'
        )
    else:
        backend = f"http://{o.upstreams[0]}/"
        proxy = (
            f'ProxyPass "{o.path}" "{backend}" {worker}\nProxyPassReverse "{o.path}" "{backend}"\n'
        )
    return f"""\
# fullduplex {__version__} behind Apache httpd 2.4.47+: `fullduplex proxy-config apache`.
# Run it as is (apache2 -f THIS_FILE -DFOREGROUND), or copy the proxy part into a VirtualHost.
{loads}{runtime}Listen {o.listen}
ServerName {o.server_name}
# Only used when started as root: the workers run as this user.
User www-data
Group www-data

ProxyRequests Off
ProxyPreserveHost On
# mod_proxy_http tunnels the WebSocket upgrade itself (2.4.47+). timeout: seconds of silence
# before the connection is cut; keep it above the server's ping interval (20 s by default).
{proxy}<Location "{o.path}">
    Require all granted
</Location>

# Apache before 2.4.47: mod_proxy_wstunnel (and mod_rewrite) instead of upgrade=websocket:
# LoadModule proxy_wstunnel_module {mods}/mod_proxy_wstunnel.so
# LoadModule rewrite_module {mods}/mod_rewrite.so
# RewriteEngine On
# RewriteCond %{{HTTP:Upgrade}} websocket [NC]
# RewriteRule ^{o.path}(.*) ws://{o.upstreams[0]}/$1 [P,L]
# ProxyPass "{o.path}" "http://{o.upstreams[0]}/"
# ProxyWebsocketIdleTimeout {o.read_timeout}
"""
