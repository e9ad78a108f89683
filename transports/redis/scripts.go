package redis

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"

	goredis "github.com/redis/go-redis/v9"
)

// takeScript takes up to count messages and, unless told not to, records
// each in the unacked hash and index in the same step, so that no message is
// ever out of every list and out of the unacked hash at once. Kombu pops with
// BRPOP and records afterwards, from the client, and loses a message when the
// consumer dies in between.
//
// The bucket keys come priority-major, as Kombu's BRPOP lists them: every
// queue's step-0 key, then every queue's step-3 key, and so on, so lower
// priority numbers are served first. Within a step, queues are tried in the
// order given, and a queue that yields a message moves to the end (Kombu's
// round_robin queue_order_strategy).
//
// The unacked value is Kombu's [message, exchange, routing_key], written as
// json.dumps writes it, around the stored message text unchanged. The
// exchange is "" and the routing key is the queue's name: restoring it (by
// Kombu's restore_visible or ours) then puts the message back on the queue it
// was taken from, and only there.
//
// A message that is not a JSON object cannot be restored by Kombu (its
// restore would fail on it), so it is not recorded: it is returned with an
// empty hash key. A JSON object without a usable delivery tag is recorded
// under one made from its SHA-1, and a tag already in the hash (Kombu gives
// every queue's copy of a message the same tag) gets a ".2", ".3", ...
// suffix, so that one copy's acknowledgement cannot drop another's record.
//
// A take that recorded messages also writes a receipt: the take's number
// and, for each message recorded, its queue position, step and hash key, as
// JSON under the caller's receipt key (one per subscription, overwritten by
// each take, expiring after the visibility timeout). If the reply is lost
// (Redis stopped after running the script but before sending the reply,
// or the connection broke in between), the caller reads the receipt and
// returns those messages to their queues at once (see recoverTakes), where
// Kombu leaves them for the visibility timeout.
//
// KEYS: unacked, unacked_index, receipt, bucket keys (step-major, then queue).
// ARGV: count, score (time taken, in seconds), record ("1" or "0"), number of
// queues, take number, receipt lifetime in milliseconds, then each queue's
// name as a JSON string.
// Returns a flat array: queue position (1-based), step (0-based), message,
// hash key ("" when not recorded), for each message taken.
var takeScript = goredis.NewScript(`
local count = tonumber(ARGV[1])
local record = ARGV[3] == '1'
local nq = tonumber(ARGV[4])
local ns = (#KEYS - 3) / nq
local receipt = {}
local order = {}
for i = 1, nq do order[i] = i end
local out = {}
for n = 1, count do
  local found = false
  for s = 0, ns - 1 do
    for oi = 1, nq do
      local q = order[oi]
      local item = redis.call('RPOP', KEYS[3 + s * nq + q])
      if item then
        local hkey = ''
        if record and string.find(item, '^%s*{') then
          -- Kombu writes the delivery tag last: read it from the end, and
          -- parse the message only when it is not there.
          local tag = string.match(string.sub(item, -80), '"delivery_tag": "([%w%-]+)"}}%s*$')
          local ok = true
          if not tag then
            local msg
            ok, msg = pcall(cjson.decode, item)
            if ok and type(msg) == 'table' then
              local props = msg['properties']
              if type(props) == 'table' and type(props['delivery_tag']) == 'string' and props['delivery_tag'] ~= '' then
                tag = props['delivery_tag']
              else
                tag = 'kombu-go-' .. redis.sha1hex(item)
              end
            else
              ok = false
            end
          end
          if ok then
            local value = '[' .. item .. ', "", ' .. ARGV[6 + q] .. ']'
            hkey = tag
            local i = 1
            while redis.call('HSETNX', KEYS[1], hkey, value) == 0 do
              i = i + 1
              hkey = tag .. '.' .. i
            end
            redis.call('ZADD', KEYS[2], ARGV[2], hkey)
            receipt[#receipt + 1] = {q, s, hkey}
          end
        end
        out[#out + 1] = q
        out[#out + 1] = s
        out[#out + 1] = item
        out[#out + 1] = hkey
        table.remove(order, oi)
        order[#order + 1] = q
        found = true
        break
      end
    end
    if found then break end
  end
  if not found then break end
end
if #receipt > 0 then
  redis.call('SET', KEYS[3], cjson.encode({ARGV[5], receipt}), 'PX', ARGV[6])
end
return out
`)

// publishScript pushes a message to the queues a client routed it to, but
// only if the exchange's binding set is still the one the client routed
// with (same fingerprint, see bindingFingerprint). Otherwise it pushes
// nothing and returns the current members, and the client routes again.
// One round trip per publish, and never a route computed from stale
// bindings.
//
// Dead-lettering (see deadletter.go) publishes through it too, settling the
// rejected message in the same step: given the unacked hash and index as two
// more keys and the message's hash key as one more argument, it removes the
// unacked record before pushing, and pushes nothing (returning -1) if the
// record was already gone (a restore put the message back meanwhile). So a
// dead-lettered message is either still unacked or in its new queues, never
// both and never neither.
//
// KEYS: binding set, destination lists[, unacked, unacked_index].
// ARGV: fingerprint, one message per destination[, hash key to settle].
// Returns the number of destinations pushed to, -1 if the record to settle
// was gone, or the binding set's members if it changed.
var publishScript = goredis.NewScript(fingerprintLua + `
local m, fp = fingerprint(KEYS[1])
if fp ~= ARGV[1] then return m end
local n = #ARGV - 1
if #KEYS > #ARGV then
  n = n - 1
  local hkey = ARGV[#ARGV]
  if hkey ~= '' then
    local gone = redis.call('HDEL', KEYS[#KEYS - 1], hkey) == 0
    redis.call('ZREM', KEYS[#KEYS], hkey)
    if gone then return -1 end
  end
end
for i = 1, n do redis.call('LPUSH', KEYS[i + 1], ARGV[i + 1]) end
return n
`)

// fingerprintLua defines fingerprint(key), which returns a binding set's
// members and their fingerprint (see bindingFingerprint), for the scripts
// that publish only through the binding set the client routed with.
const fingerprintLua = `
local function fingerprint(key)
  local m = redis.call('SMEMBERS', key)
  local a, b = 0, 0
  for i = 1, #m do
    local h = redis.sha1hex(m[i])
    a = a + tonumber(string.sub(h, 1, 7), 16)
    b = b + tonumber(string.sub(h, 8, 14), 16)
  end
  return m, #m .. ':' .. string.format('%.0f', a) .. ':' .. string.format('%.0f', b)
end
`

// bindingFingerprint computes what publishScript computes from a binding
// set: the member count and two sums of 28-bit slices of each member's
// SHA-1, which do not depend on the order SMEMBERS returns them in.
func bindingFingerprint(members []string) string {
	var a, b int64
	for _, m := range members {
		sum := sha1.Sum([]byte(m))
		h := hex.EncodeToString(sum[:])
		x, _ := strconv.ParseInt(h[0:7], 16, 64)
		y, _ := strconv.ParseInt(h[7:14], 16, 64)
		a += x
		b += y
	}
	return strconv.Itoa(len(members)) + ":" + strconv.FormatInt(a, 10) + ":" + strconv.FormatInt(b, 10)
}

// returnScript puts a message this connection took back on a queue: to the
// back (LPUSH) for a requeue, as Kombu's reject(requeue=True); to the front
// (RPUSH) for a restore, as Kombu's restore at channel close. It does so
// only if the message's unacked record was still there, and removes it: if
// a restore elsewhere already put the message back, it is not put back
// twice. An empty hash key marks a message that was never recorded.
//
// KEYS: unacked, unacked_index, destination list. ARGV: hash key, message,
// "L" (back) or "R" (front). Returns 1 if pushed, 0 if not.
var returnScript = goredis.NewScript(`
if ARGV[1] ~= '' then
  local gone = redis.call('HDEL', KEYS[1], ARGV[1]) == 0
  redis.call('ZREM', KEYS[2], ARGV[1])
  if gone then return 0 end
end
if ARGV[3] == 'L' then
  redis.call('LPUSH', KEYS[3], ARGV[2])
else
  redis.call('RPUSH', KEYS[3], ARGV[2])
end
return 1
`)

// restoreScript restores one unacked message whose visibility timeout
// passed, as Kombu's restore_by_tag does in a WATCH/MULTI transaction: it
// removes the record and pushes the message (marked redelivered) to the
// front of its queues. It does nothing if the record changed since the
// client read it, or if its score was renewed past the ceiling meanwhile
// (a consumer extending its lease).
//
// KEYS: unacked, unacked_index, destination lists. ARGV: hash key, the
// value read, ceiling score, message to push. Returns 1 if restored, 0 if
// the lease was renewed, -1 if the record was gone, -2 if it changed.
var restoreScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return -1
end
if v ~= ARGV[2] then return -2 end
local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
if s and tonumber(s) > tonumber(ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
for i = 3, #KEYS do redis.call('RPUSH', KEYS[i], ARGV[4]) end
return 1
`)

// unlockScript releases the unacked_mutex if this client still holds it:
// redis-py's Lock.release script, which Kombu's Mutex uses.
var unlockScript = goredis.NewScript(`
local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
redis.call('del', KEYS[1])
return 1
`)
