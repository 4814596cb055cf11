"""`edgeformer serve DIR`: a web deployment folder over HTTP with the isolation headers (edgeformer.deploy.serve)."""

from __future__ import annotations

import click


@click.command()
@click.argument("folder", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The default answers this machine only; 0.0.0.0 answers the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: a free one).")
def serve(folder, host, port):
    """Serve FOLDER (from `deploy --target web`) with COOP/COEP headers, so its page runs on several threads."""
    from edgeformer.deploy.serve import LOOPBACK, make_server

    server = make_server(folder, host, port, quiet=False)
    if host not in (LOOPBACK, "localhost", "::1"):
        click.echo(f"warning: listening on {host}: other machines can read {server.folder}", err=True)
    click.echo(f"serving {server.folder} at {server.url} (cross-origin isolated; Ctrl+C stops)", err=True)
    click.echo(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
