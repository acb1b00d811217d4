package installerkey

import (
	"sort"
	"strings"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// Field names a peer default an installer may let the host override at
// install time (the seeds' "allow override during installation").
type Field uint32

const (
	FieldGroup Field = 1 << iota
	FieldTag
	FieldComments
	FieldName
	FieldJumpPolicy
	FieldSessionPolicyPresent
	FieldSessionPolicyNotPresent
	FieldMaxOfflineMinutes
	FieldPublicSiteAddress
)

// AllFields is every overridable field.
const AllFields = FieldGroup | FieldTag | FieldComments | FieldName | FieldJumpPolicy |
	FieldSessionPolicyPresent | FieldSessionPolicyNotPresent | FieldMaxOfflineMinutes | FieldPublicSiteAddress

// fieldNames are the names used by `installer create --allow-override`;
// each matches the `--jc-` install flag that overrides it.
var fieldNames = map[string]Field{
	"jump-group":                 FieldGroup,
	"tag":                        FieldTag,
	"comments":                   FieldComments,
	"name":                       FieldName,
	"jump-policy":                FieldJumpPolicy,
	"session-policy-present":     FieldSessionPolicyPresent,
	"session-policy-not-present": FieldSessionPolicyNotPresent,
	"max-offline-minutes":        FieldMaxOfflineMinutes,
	"public-site-address":        FieldPublicSiteAddress,
}

// FieldNames lists the override field names, sorted.
func FieldNames() []string {
	out := make([]string, 0, len(fieldNames))
	for n := range fieldNames {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ParseFields turns names ("tag", "name", or "all") into a field set.
func ParseFields(names []string) (Field, error) {
	var set Field
	for _, n := range names {
		for _, part := range strings.Split(n, ",") {
			part = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(part), "jc-"))
			if part == "" {
				continue
			}
			if part == "all" {
				set |= AllFields
				continue
			}
			f, ok := fieldNames[part]
			if !ok {
				return 0, catalog.Errorf(catalog.CodeInvalidArgument, "unknown override field %q (one of: all, %s)", part, strings.Join(FieldNames(), ", "))
			}
			set |= f
		}
	}
	return set, nil
}

// Names lists the names of the fields in set, sorted.
func (set Field) Names() []string {
	var out []string
	for n, f := range fieldNames {
		if set&f != 0 {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
