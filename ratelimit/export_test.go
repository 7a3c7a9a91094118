package ratelimit

import "time"

// AttributionValue is the value the script stores as an accepted message's
// Message-ID record (the desk's section of script.lua), for the memory
// measurement of TestAttributionMemory.
func AttributionValue(rec MessageRecord, instance string, at time.Time, usage []Usage) string {
	var u []string
	for _, x := range usage {
		row := usageRow(x)
		u = append(u, `["`+row[0].(string)+`","`+row[1].(string)+`",`+formatInt(x.Rate.Limit)+`,`+formatInt(x.Rate.Window.Microseconds())+`,`+formatInt(x.Used)+`]`)
	}
	s := recordPrefix(attributionRecord(rec, instance)) + `,"at_us":` + formatInt(at.UnixMicro()) + `,"u":[`
	for i, x := range u {
		if i > 0 {
			s += ","
		}
		s += x
	}
	return s + "]}"
}

// AttributionKey is the key of a Message-ID record under prefix.
func AttributionKey(prefix, messageID string) string {
	return prefix + "mid:" + idKey(NormalizeMessageID(messageID))
}

// SentHoursKept is how many hours of an account's sending history the
// in-memory store holds, for TestSentHistoryBounded.
func SentHoursKept(m *Memory, account string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.hist.sent[account])
}
