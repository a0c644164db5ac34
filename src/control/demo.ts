// The embedded default behind `sgemu demo`: a config (web tier, database, SSH with nothing behind
// it, an outside stranger) and its demo backends, so that one command shows the three outcomes.

import http from 'node:http';
import net from 'node:net';
import { SgemuError } from '../model/errors.js';

// Below Linux's ephemeral range (32768-60999), so client sockets never hold them.
export const DEMO_PORTS = { http: 27080, echo: 27032, sshDown: 27022 } as const;

export const DEMO_CONFIG = `# sgemu demo: the embedded default. Copy it to ./sgemu.yaml to start your own.
region: us-east-1
prefixLists:
  - { id: pl-office, name: office, entries: [198.51.100.0/24] }
securityGroups:
  - id: sg-web
    name: web
    description: public web tier
    ingress:
      - { protocol: tcp, ports: 8080, cidr: 127.0.0.1/32, description: http from my laptop }
      - { protocol: tcp, ports: 8080, prefixLists: [pl-office], description: http from the office }
  - id: sg-ssh
    name: ssh
    description: admin access
    ingress:
      - { protocol: tcp, ports: 22, cidr: 127.0.0.1/32, description: ssh from my laptop }
  - id: sg-db
    name: db
    description: database tier
    ingress:
      - { protocol: tcp, ports: 5432, groups: [web], description: postgres from the web tier }
instances:
  - name: web
    address: 127.0.0.10
    securityGroups: [web, ssh]
    services:
      - { protocol: tcp, port: 8080, backend: "127.0.0.1:${DEMO_PORTS.http}" }
      - { protocol: tcp, port: 22, listenPort: 2222, backend: "127.0.0.1:${DEMO_PORTS.sshDown}" }
    outbound:
      - { protocol: tcp, port: 25432, to: "db:5432" }
  - name: db
    address: 127.0.0.20
    securityGroups: [db]
    services:
      - { protocol: tcp, port: 5432, listenPort: 15432, backend: "127.0.0.1:${DEMO_PORTS.echo}" }
addresses:
  127.0.0.5: 203.0.113.5       # a stranger on the internet
  127.0.0.7: 198.51.100.7      # someone in the office (pl-office)
`;

/** Starts the demo backends: an HTTP server and a line echo. Nothing listens on DEMO_PORTS.sshDown. */
export async function startDemoBackends(): Promise<() => Promise<void>> {
  const web = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`hello from the demo web backend (you are ${req.socket.remoteAddress}, via sgemu)\n`);
  });
  const echo = net.createServer((c) => { c.on('error', () => {}); c.pipe(c); });
  await listen(web, DEMO_PORTS.http);
  try {
    await listen(echo, DEMO_PORTS.echo);
  } catch (e) {
    await new Promise((r) => web.close(r));    // do not leave the first one listening
    throw e;
  }
  return async () => {
    web.closeAllConnections();
    await Promise.all([new Promise((r) => web.close(r)), new Promise((r) => echo.close(r))]);
  };
}

function listen(s: net.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('error', (e: NodeJS.ErrnoException) => reject(new SgemuError('DemoPortInUse',
      `demo backend port 127.0.0.1:${port} is taken (${e.code}); stop whatever uses it, or run 'sgemu run' with your own config`)));
    s.listen(port, '127.0.0.1', () => resolve());
  });
}

export function demoTour(configPath: string, api: string, rawRefusal: boolean, nativeFilter: boolean, uiUrl: string | null = null): string {
  const c = `-c ${configPath}`;
  return `
sgemu demo is running: two instances on loopback, web (127.0.0.10) and db (127.0.0.20).
Try these in another terminal (Ctrl-C here stops everything):

 1. ALLOWED  your laptop (127.0.0.1) may reach the web tier
      curl -s http://127.0.0.10:8080/
      -> hello from the demo web backend

 2. TIMEOUT  a stranger on the internet (127.0.0.5, which the rules see as 203.0.113.5) may not
      curl -sS --interface 127.0.0.5 --connect-timeout 3 http://127.0.0.10:8080/
      -> curl: (28) "Failed to connect ... after 3000 ms": no SYN-ACK ever came, the SYN was
         dropped in the kernel before any handshake${nativeFilter ? '' : '\n      FALLBACK here: no kernel filter on TCP listeners, so curl connects and is then reset\n      ("Recv failure: Connection reset by peer") instead of timing out; run sgemu doctor'}

 3. REFUSED  SSH is allowed from your laptop, but nothing listens behind it
      curl -sS telnet://127.0.0.10:2222        (or: nc -vz 127.0.0.10 2222)
      -> curl: (7) "Couldn't connect to server" after a few ms (nc: "Connection refused"):
         ECONNREFUSED at once: the packet got through, no one was home${rawRefusal ? '' : '\n      FALLBACK here: no exact refusal, so curl connects and is then reset instead of being\n      refused; run sgemu doctor'}

 4. TIMEOUT  the database takes connections only from the web tier (group reference)
      curl -sS --connect-timeout 3 telnet://127.0.0.20:15432
      -> curl: (28) after 3 s: a timeout, the database's security group dropped it${nativeFilter ? '' : '\n      FALLBACK here: connect then reset instead of the timeout, as in step 2'}

 5. ALLOWED  the web instance's own outbound connection to db:5432 (egress + db's ingress)
      bash -c 'exec 3<>/dev/tcp/127.0.0.10/25432; echo hello >&3; head -1 <&3'
      -> hello   (the db echo answered; db's rules saw the connection come from web, 127.0.0.10)

 6. WHY      ask for the decision and the rules behind it
      npx sgemu explain ${c} --from 127.0.0.5 --to web --protocol tcp --port 8080
      npx sgemu explain ${c} --from web --to db --protocol tcp --port 5432
      npx sgemu lint ${c}

 7. STATE    the connection-tracking table while a connection is open
      npx sgemu conntrack --api ${api}
${uiUrl ? `
 8. WATCH    the web dashboard: every flow above as it happens, why it was decided, the
             conntrack table, and rule changes (authorize 203.0.113.5/32 on sg-web: the
             stranger of 2., as the rules see 127.0.0.5, gets in)
      ${uiUrl}
` : ''}
 The config is ${configPath}; edit it and send SIGHUP (or use 'sgemu run --watch') to see rule changes.
`;
}
