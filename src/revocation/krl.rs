// KRL
