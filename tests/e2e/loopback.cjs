// Preloaded into test servers that listen on every interface, so that they
// listen on 127.0.0.1 only: load tests and e2e tests never open other ports.
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args.length === 1 || typeof args[1] === "function")) {
    return listen.call(this, args[0], "127.0.0.1", ...args.slice(1));
  }
  if (args[0] && typeof args[0] === "object" && args[0].port !== undefined && !args[0].host) {
    return listen.call(this, { ...args[0], host: "127.0.0.1" }, ...args.slice(1));
  }
  return listen.apply(this, args);
};
