#!/bin/sh
# Serve /data; enable uploads only when an htpasswd secret is mounted, HTTPS when a certificate is. Extra arguments pass
# through to `jetwheel index.serve` (e.g. --upstream "" for an air-gapped LAN); the port is $PORT.
# nginx answers the reads unless JETWHEEL_NGINX=0 (or --auth-reads, which only the app can check).
set -e
if [ -f /run/secrets/htpasswd ]; then
    set -- --htpasswd /run/secrets/htpasswd "$@"
fi
if [ -f /run/secrets/tls.crt ] && [ -f /run/secrets/tls.key ]; then
    set -- --certfile /run/secrets/tls.crt --keyfile /run/secrets/tls.key "$@"
else
    case " $* " in
        *" --auth-reads "*) ;;
        *) if [ "${JETWHEEL_NGINX:-1}" != 0 ]; then set -- --nginx "$@"; fi ;;
    esac
fi
exec jetwheel index.serve --root /data --host 0.0.0.0 --port "${PORT:-8080}" "$@"
