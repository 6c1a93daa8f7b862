// A small HTTP server for Prometheus scrapes: GET /metrics answers with the
// text a render function returns. It runs on cpp-httplib, whose threads are
// ordinary std::threads with normal stacks (prometheus-cpp's civetweb
// Exposer cannot start its small-stack threads in a process that also loads
// OpenBLAS and LibTorch; see server/README.md).
#ifndef HARMAMBA_SERVER_METRICS_HTTP_H_
#define HARMAMBA_SERVER_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace harmamba {

class MetricsHttpServer {
 public:
  // Returns the exposition text; called on the server's threads, possibly
  // concurrently, so it must be thread-safe.
  using Render = std::function<std::string()>;

  // Listens on `address` ("host:port", "[v6-host]:port"; port 0 picks a free
  // port) and serves in the background: GET /metrics -> render() with
  // `content_type`; GET / -> a one-line page linking to /metrics; anything
  // else -> 404. Errors: InvalidArgument for a malformed address;
  // Unavailable when the address cannot be bound (e.g. the port is in use).
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, Render render,
      const std::string& content_type);

  // Stop().
  ~MetricsHttpServer();

  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The port bound.
  int port() const { return port_; }

  // Stops listening, finishes requests in progress and joins the threads.
  // Idempotent; not thread-safe against itself.
  void Stop();

 private:
  struct Impl;
  MetricsHttpServer();

  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  int port_ = 0;
};

// Splits "host:port" or "[host]:port" (brackets removed). InvalidArgument
// naming the expected form.
absl::Status SplitHostPort(const std::string& address, std::string* host,
                           int* port);

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_METRICS_HTTP_H_
