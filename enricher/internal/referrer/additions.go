package referrer

import (
	"strings"

	"golang.org/x/net/publicsuffix"
)

// own are hosts the Ghost list lacks, kept here under the project's
// licence. They were added after measuring against Snowplow's test cases,
// so docs/bench/enricher.md reports agreement with and without them.
// Lookups also match subdomains (tdsf.doubleclick.net).
var own = map[string]Rule{
	// AI assistants, whose links became a referrer class of their own.
	"chatgpt.com":           {Chatbot, "ChatGPT"},
	"chat.openai.com":       {Chatbot, "ChatGPT"},
	"claude.ai":             {Chatbot, "Claude.ai"},
	"perplexity.ai":         {Chatbot, "Perplexity.ai"},
	"gemini.google.com":     {Chatbot, "Google Gemini"},
	"copilot.microsoft.com": {Chatbot, "Microsoft Copilot"},
	"chat.mistral.ai":       {Chatbot, "Mistral.ai"},
	"poe.com":               {Chatbot, "Poe"},
	"character.ai":          {Chatbot, "Character.AI"},
	"meta.ai":               {Chatbot, "META.ai"},
	"chat.deepseek.com":     {Chatbot, "DeepSeek"},
	// Google's ad serving and search-ads hosts.
	"doubleclick.net":            {Paid, "Google"},
	"googlesyndication.com":      {Paid, "Google"},
	"adsensecustomsearchads.com": {Paid, "Google"},
	"syndicatedsearch.goog":      {Paid, "Google"},
	// Social networks newer than the list.
	"threads.net":   {Social, "Threads"},
	"threads.com":   {Social, "Threads"},
	"workplace.com": {Social, "Workplace"},
	"lnk.bio":       {Social, "Lnk.Bio"},
	"bsky.app":      {Social, "Bluesky"},
	// Web mail of large European providers, whose "deref-" hosts strip
	// the message address before a link is followed.
	"web.de":         {Email, "Web.de"},
	"1und1.de":       {Email, "1und1"},
	"suche.1und1.de": {Search, "1und1"},
	"bluewin.ch":     {Email, "Bluewin"},
	"t-online.de":    {Email, "T-online"},
	"proton.me":      {Email, "Proton Mail"},
	"mail.com":       {Email, "Mail.com"},
	"infomaniak.com": {Email, "Infomaniak"},
}

// mailBrands are web-mail providers known under many country domains
// (gmx.de, gmx.at, deref-gmx.co.uk): the label before the public suffix.
var mailBrands = map[string]string{"gmx": "GMX", "ionos": "Ionos"}

// guessEmail recognises web mail the rules do not list: a provider brand
// under any country domain, or a host whose name says mail
// (webmail.tim.it, mail.vodafone.de, upcmail.hispeed.ch, messagerie.orange.fr).
// The source is then the name the rules give the site's web mail
// elsewhere (orange.fr/webmail is "Orange Webmail"), or the site's name.
func (p *Parser) guessEmail(host string) (Rule, bool) {
	site, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return Rule{}, false
	}
	label, _, _ := strings.Cut(site, ".")
	label = strings.TrimPrefix(label, "deref-")
	if i := strings.IndexByte(label, '-'); i > 0 {
		label = label[:i] // deref-1und1-02.de
	}
	if brand, ok := mailBrands[label]; ok {
		return Rule{Email, brand}, true
	}
	if r, ok := own[label+site[strings.IndexByte(site, '.'):]]; ok && r.Medium == Email {
		return r, true // deref-web.de is web.de
	}
	sub := strings.TrimSuffix(host, site)
	for part := range strings.SplitSeq(strings.TrimSuffix(sub, "."), ".") {
		if strings.Contains(part, "mail") || strings.HasPrefix(part, "messagerie") {
			if name, ok := p.mailNames[site]; ok {
				return Rule{Email, name}, true
			}
			return Rule{Email, strings.ToUpper(label[:1]) + label[1:]}, true
		}
	}
	return Rule{}, false
}
