#if os(Linux)
    import CLibPQ
    import Foundation
    import Glibc
    import NIOConcurrencyHelpers

    /// One thread that waits, with epoll, on the sockets of every connection that
    /// has a pipeline in flight, and reads each answer as it arrives.
    ///
    /// The caller sends its pipeline on its own thread without blocking
    /// (`Connection.sendPipeline(_:blocking: false)`), then `watch` arms the
    /// connection's socket (one shot). One wake-up of the watcher serves every
    /// answer that arrived meanwhile, where a blocking pipeline costs a wake-up of
    /// a pool thread to send and a sleep in `poll()` until its own answer.
    final class PipelineWatcher: Sendable {
        typealias Completion = @Sendable (Result<[QueryResult], any Error>) -> Void

        /// A pipeline in flight. Touched by the caller until its socket is armed,
        /// then only by the watcher's thread.
        private final class Job: @unchecked Sendable {
            let connection: Connection
            let completion: Completion
            /// Part of the pipeline is still in libpq's buffer, to send when the socket is writable.
            var unsent: Bool

            init(connection: Connection, completion: @escaping Completion, unsent: Bool) {
                self.connection = connection
                self.completion = completion
                self.unsent = unsent
            }
        }

        private struct State {
            /// Pipelines in flight by socket: a connection has at most one.
            var jobs: [Int32: Job] = [:]
            var stopping = false
        }

        private let epoll: Int32
        /// An eventfd in the epoll set: written once, to stop the thread.
        private let wake: Int32
        private let state = NIOLockedValueBox(State())

        /// Starts the watcher's thread; nil when the kernel refuses an epoll or an eventfd.
        init?(name: String) {
            let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
            guard epoll >= 0 else { return nil }
            let wake = eventfd(0, Int32(EFD_CLOEXEC) | Int32(EFD_NONBLOCK))
            var event = epoll_event()
            event.events = EPOLLIN.rawValue
            event.data.fd = wake
            guard wake >= 0, epoll_ctl(epoll, EPOLL_CTL_ADD, wake, &event) == 0 else {
                close(epoll)
                if wake >= 0 { close(wake) }
                return nil
            }
            self.epoll = epoll
            self.wake = wake
            Thread { [self] in
                // Named from inside: a name given before `start` is not applied on Linux.
                Thread.current.name = name
                watch()
            }.start()
        }

        /// Pipelines in flight.
        var inFlight: Int {
            state.withLockedValue { $0.jobs.count }
        }

        /// Sends `statements` on `connection` (which must stay untouched until
        /// `completion` runs) and has the answers read by the watcher's thread.
        /// `completion` runs once: on that thread, or on the caller's when sending fails.
        func run(_ statements: [Statement], on connection: Connection, completion: @escaping Completion) {
            let unsent: Bool
            do {
                unsent = !(try connection.sendPipeline(statements, blocking: false))
            } catch {
                completion(.failure(error))
                return
            }
            let socket = connection.socket
            let job = Job(connection: connection, completion: completion, unsent: unsent)
            state.withLockedValue { $0.jobs[socket] = job }
            if !arm(socket, writable: unsent) {
                finish(
                    socket, .failure(PostgresError(kind: .connection, message: "could not watch the connection's socket (errno \(errno))")))
            }
        }

        /// Stops the thread once no pipeline is in flight (callers make sure none starts after).
        func stop() async {
            while inFlight > 0 {
                try? await Task.sleep(for: .milliseconds(2))
            }
            state.withLockedValue { $0.stopping = true }
            var one: UInt64 = 1
            _ = write(wake, &one, MemoryLayout<UInt64>.size)
        }

        // MARK: - The watcher's thread

        private func watch() {
            let capacity = 64
            var events = [epoll_event](repeating: epoll_event(), count: capacity)
            while true {
                let count = events.withUnsafeMutableBufferPointer { epoll_wait(epoll, $0.baseAddress, Int32(capacity), -1) }
                if count < 0 {
                    guard errno == EINTR else { preconditionFailure("epoll_wait failed (errno \(errno))") }
                    continue
                }
                for event in events[0..<Int(count)] {
                    let socket = event.data.fd
                    if socket == wake {
                        guard state.withLockedValue({ $0.stopping }) else { continue }
                        close(wake)
                        close(epoll)
                        return
                    }
                    guard let job = state.withLockedValue({ $0.jobs[socket] }) else { continue }
                    advance(job, socket: socket)
                }
            }
        }

        /// Sends what is left, reads what arrived, and finishes the job or arms its socket again.
        private func advance(_ job: Job, socket: Int32) {
            do {
                if job.unsent {
                    job.unsent = !(try job.connection.flushPipeline())
                }
                if let results = try job.connection.readPipeline(blocking: false) {
                    finish(socket, .success(results))
                } else if !arm(socket, writable: job.unsent) {
                    // The connection stays in pipeline mode: the pool discards it.
                    finish(
                        socket,
                        .failure(PostgresError(kind: .connection, message: "could not watch the connection's socket (errno \(errno))")))
                }
            } catch {
                finish(socket, .failure(error))
            }
        }

        private func finish(_ socket: Int32, _ outcome: Result<[QueryResult], any Error>) {
            // Removed before the completion hands the connection on: its next
            // pipeline may then start at once, on another thread, on the same socket.
            guard let job = state.withLockedValue({ $0.jobs.removeValue(forKey: socket) }) else { return }
            job.completion(outcome)
        }

        /// Arms the socket for one event: readable, and writable too when part of the pipeline is unsent.
        private func arm(_ socket: Int32, writable: Bool) -> Bool {
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLONESHOT.rawValue | (writable ? EPOLLOUT.rawValue : 0)
            event.data.fd = socket
            if epoll_ctl(epoll, EPOLL_CTL_MOD, socket, &event) == 0 { return true }
            // A socket the set has not seen yet (a new connection, or one whose
            // number was reused after the old connection closed).
            return errno == ENOENT && epoll_ctl(epoll, EPOLL_CTL_ADD, socket, &event) == 0
        }
    }
#endif
