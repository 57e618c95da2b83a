# usage: client.py HOST:PORT N CONNS PATH [pipelined]
# N GET requests over CONNS keep-alive connections, round robin, each waiting for its response.
import socket, sys
host, port = sys.argv[1].rsplit(':', 1)
n, conns, path = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: w-client\r\nAccept: */*\r\n\r\n" % path).encode()
socks = [socket.create_connection((host, int(port))) for _ in range(conns)]
bufs = [b''] * conns
def read_one(i):
    s = socks[i]; b = bufs[i]
    while b'\r\n\r\n' not in b:
        b += s.recv(65536)
    head, rest = b.split(b'\r\n\r\n', 1)
    cl = 0
    for line in head.split(b'\r\n')[1:]:
        k, v = line.split(b':', 1)
        if k.strip().lower() == b'content-length': cl = int(v)
    assert head.startswith(b'HTTP/1.1 200'), head
    while len(rest) < cl:
        rest += s.recv(65536)
    bufs[i] = rest[cl:]
done = 0
while done < n:
    k = min(conns, n - done)
    for i in range(k): socks[i].sendall(req)
    for i in range(k): read_one(i)
    done += k
print(done)
