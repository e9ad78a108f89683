// Package filesystem is Kombu's filesystem transport for kombu-go,
// registered as the "filesystem" scheme: messages are files in a folder,
// written and read as Python Kombu writes and reads them, so that Go and
// Python processes on one machine (or sharing one file system with working
// flock(2)) exchange messages both ways. It uses the standard library
// only, and needs flock(2): it works on Linux and the BSDs, macOS included,
// and Open refuses it elsewhere with transport.ErrNotSupported.
//
// Import it for its side effect:
//
//	import _ "github.com/kombu-go/kombu/transports/filesystem"
//
// # URLs
//
// Kombu's transport options are the URL's query parameters:
//
//	filesystem://?data_folder_in=/spool/in&data_folder_out=/spool/out&control_folder=/spool/control
//
// The options are:
//
//   - data_folder_in: the folder consumers read (Kombu's default "data_in",
//     relative to the working directory, as every relative folder is);
//   - data_folder_out: the folder publishers write ("data_out"). Kombu's
//     two processes cross them: a producer's out is its consumer's in;
//   - control_folder: the binding tables ("control"), made if missing;
//   - store_processed: keep acknowledged messages in processed_folder
//     ("processed") instead of deleting them;
//   - polling_interval: seconds between looks at an empty queue (Kombu's,
//     default 1), when nothing wakes the consumer sooner (see below).
//
// kombu-go adds a shorthand for one folder holding everything:
// filesystem:///var/spool/kombu reads and writes messages in
// /var/spool/kombu, with the control folder /var/spool/kombu/control and
// the processed folder /var/spool/kombu/processed (query options still
// override each). The data folders and, with store_processed, the
// processed folder must exist and be writable: Open fails naming the
// folder otherwise.
//
// # Layout
//
// A message is one file in data_folder_out, named as Kombu names it,
// <milliseconds>_<uuid4>.<queue>.msg, whose content is Kombu's JSON
// envelope (see package virtual). The milliseconds are the system's
// monotonic clock, which Python's time.monotonic() reads too, so that
// files sort by when they were written among Go and Python writers of one
// machine; a connection writing faster than one file a millisecond counts
// ahead of the clock, so that its own files keep their order. Go writes a
// file under a temporary name (.kombu-go-<uuid>.tmp, which no reader
// takes) and renames it into place, so that nobody reads half a message.
//
// A consumer takes the oldest file of its queue (by the milliseconds as a
// number, then by name) by renaming it into a folder of its connection's,
// data_folder_in/.kombu-go/taken/<connection>/: a rename succeeds for one
// taker only, so no message is taken twice, whatever the number of
// consumers and processes. Kombu reads files whose names merely contain
// ".<queue>.msg", so that its queue "b" also takes queue "a.b"'s files;
// kombu-go reads the queue name out of the file name and takes only its
// own queue's (Python's files included). A file still locked by its
// Python writer, or empty or not JSON and less than two seconds old, is
// left for later: Kombu creates a file before it locks and writes it.
//
// A taken message stays in its connection's folder until it is settled:
// an ack deletes it (or moves it to processed_folder), a requeue or the
// connection's Close renames it back under its own name, marked
// redelivered, so that it takes its old place in the queue. The
// connection holds an exclusive flock on
// data_folder_in/.kombu-go/taken/<connection>.lock for as long as it is
// open; the kernel releases it when the process ends, killed or not.
// Every connection, when it opens and every five seconds after, restores
// the messages of the connections whose lock it can take: nothing a
// consumer took is lost when its process dies mid-handler, where Kombu,
// which deletes a file as it takes it, loses it. A file that is not a
// Kombu envelope is moved to data_folder_in/.kombu-go/unreadable/ with a
// warning, and never reaches a handler.
//
// Bindings are Kombu 5.3's: control_folder/<exchange>.exchange holds the
// exchange's routing table as a JSON list of [routing_key, pattern, queue]
// rows, read under a shared flock and changed under an exclusive one.
// Exchange types live in the memory of the connections that declare them,
// as in Kombu. Fanout copies a message to every queue in its exchange's
// table. Kombu 5.2 (Debian bookworm's python3-kombu) keeps its bindings in
// each process's memory and has no fanout here: a 5.2 process routes only
// through the bindings it made itself, and does not see Go's.
//
// # Features
//
// Direct, topic and fanout exchanges (topic keys matched as Kombu matches
// them, see package virtual), publishes that return once the file is in
// place (transport.FeatureConfirms), mandatory publishing and
// dead-lettering emulated as on Redis, delayed delivery in a folder of
// kombu-go's (see delay.go: data_folder_out/.kombu-go/delayed/, which no
// Python consumer reads). Priorities, TTLs, max length and
// headers exchanges are refused with transport.ErrNotSupported, as Kombu's
// filesystem transport has none. Queue and exchange names holding '/' or
// NUL are refused too. Consumers are woken by inotify on Linux when any
// process writes a file for their queues; elsewhere they poll every
// polling_interval for files of other processes. Files are not fsynced,
// as Kombu's are not: a message survives its process, not a power cut.
package filesystem
