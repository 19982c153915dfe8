# An example JupyterHub configuration for a flexlab pool shared by Hub users (docs/security.md,
# "Two tiers of access"). Copy it, then adapt the addresses, paths and the authenticator.
#
# - The pool front runs as a Hub-managed service, as the Hub's own account (root, or a
#   dedicated one such as `flexlab`): it alone reads the pool's client certificate
#   (/etc/flexlab/tls, mode 0700, owned by that account).
# - Each user's single-user server and kernels run as that user's system account (the
#   spawner's job, e.g. LocalProcessSpawner or SystemdSpawner) and hold no pool credential:
#   the server extension forwards to the front with the user's own Hub token, and kernels
#   find the front through $FLEXLAB_FRONT.
# - Users' tokens (the server's $JUPYTERHUB_API_TOKEN included) need the scope
#   access:services!service=flexlab, granted below.
#
# jupyterhub -f jupyterhub_config.py

c = get_config()  # type: ignore[name-defined]  # noqa: F821  (JupyterHub provides it)

# On the pool's machines, as root: flexlab up --tls /etc/flexlab/tls --private-user '{owner}'
# (and flexlab agent ... --private-user '{owner}'): users' private workers run as themselves.
POOL = "tls://10.0.0.5:8786"
POOL_TLS = "/etc/flexlab/tls"  # ca.pem, client.pem, client-key.pem (flexlab certs)
FRONT_PORT = 10101  # the front listens here, on loopback; the Hub's proxy routes /services/flexlab/ to it

c.JupyterHub.services = [
    {
        "name": "flexlab",
        "url": f"http://127.0.0.1:{FRONT_PORT}",
        "command": ["flexlab", "front", "--scheduler", POOL, "--tls", POOL_TLS],
        "display": False,
    }
]

# Users may call the front (their browser through their server, and their kernels); the
# token the Hub gives each single-user server ($JUPYTERHUB_API_TOKEN, which its kernels
# inherit) gets the same scope (JupyterHub >= 4).
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", "access:services!service=flexlab"]},
]
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "access:services!service=flexlab",
]

# The users' servers in front mode: the front's own URL on loopback (the proxy's
# http://HUB/services/flexlab/ works as well). Kernels get it as $FLEXLAB_FRONT.
c.Spawner.args = [f"--FlexlabJupyter.front_url=http://127.0.0.1:{FRONT_PORT}/services/flexlab/"]
c.Spawner.default_url = "/lab"
# Nothing of the pool reaches the users' servers: no $FLEXLAB_TLS, no $FLEXLAB_SCHEDULER.
c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL"]
