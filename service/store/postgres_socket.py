"""Socket options for every PostgreSQL connection a replica opens (pooled or listening).

Without them a connection whose peer vanished (a node lost, a network cut that drops packets
instead of refusing them) blocks its caller until the kernel gives up, which takes minutes: a
pooled query would hold a database thread that long, the listener would miss changes as long.
"""

#: Seconds to wait for a connection before the caller answers UNAVAILABLE.
CONNECT_TIMEOUT_S = 3
#: TCP keepalives (idle s, interval s, count) find a silent peer on an idle connection;
#: tcp_user_timeout (ms) bounds how long sent data may stay unacknowledged on a busy one.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 2, "tcp_user_timeout": 10_000}  # fmt: skip
