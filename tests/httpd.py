#!/usr/bin/env python3
"""The HTTP server of the http integration tests (tests/http.rs).

usage: httpd.py PORT [PORT ...]

Listens on every given port, IPv4 and IPv6 (one dual-stack socket each),
HTTP/1.1 with keep-alive, and answers every method. The path decides the
answer (the query string is ignored):

  /status/NNN        answers NNN
  /slow/MS/NNN       waits MS milliseconds, then answers NNN
  /hang              never answers (the connection stays open)
  anything else      200

Every answer but 204, 304 and a successful CONNECT carries a 15-byte body and
its Content-Length, and is written in one piece (headers and body together). Request bodies are read by their Content-Length. Prints
"ready" on stdout once every port listens.
"""
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # buffered output: headers and body leave in one write per answer
    wbufsize = 65536

    def log_message(self, *args):
        pass

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        status = 200
        if parts[0] == "status" and len(parts) > 1:
            status = int(parts[1])
        elif parts[0] == "slow" and len(parts) > 2:
            time.sleep(int(parts[1]) / 1000)
            status = int(parts[2])
        elif parts[0] == "hang":
            time.sleep(3600)
        self.send_response(status)
        if status in (204, 304) or (self.command == "CONNECT" and status < 300):
            # no body, and no Content-Length either (RFC 9110, 8.6); after a
            # CONNECT the connection would be a tunnel: close it instead
            self.close_connection = self.command == "CONNECT"
            self.end_headers()
            return
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "15")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"wirescope test\n")


for _method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"):
    setattr(Handler, "do_" + _method, Handler.answer)


class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self):
        # dual stack; and no name lookup of the address (HTTPServer does one)
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        TCPServer.server_bind(self)
        self.server_name = "wirescope-test"
        self.server_port = self.server_address[1]


def main():
    servers = [Server(("::", int(p)), Handler) for p in sys.argv[1:]]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
