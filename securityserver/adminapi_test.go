package securityserver

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestWritePageHugePage: a page number past the last page answers an empty
// page, also when (page-1)*elementsParPage overflows an int.
func TestWritePageHugePage(t *testing.T) {
	for _, page := range []string{"3", "9223372036854775807", "4611686018427387904"} {
		t.Run(page, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodGet, "/api/v1/clients?elementsParPage=2&page="+page, nil)
			writePage(w, r, []int{1, 2, 3})
			if w.Code != http.StatusOK || w.Body.String() != "[]\n" {
				t.Errorf("page %s: %d %q, want 200 []", page, w.Code, w.Body.String())
			}
		})
	}
}
